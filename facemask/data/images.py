"""Decoding (EXIF orientation, any colour mode -> RGB, JPEG reduce-on-decode) and the decoded-image cache.

The cache holds every image of a table decoded and resized once, as one uint8 memory-mapped array per input size.
It is keyed by the files' paths, sizes and modification times, so a changed file gives a new key and is re-read;
it is reused across epochs, runs and processes and built in parallel with a progress bar.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from facemask.errors import DataError
from facemask.utils import atomic_write_text, cpu_count

CACHE_VERSION = 2  # bump when decoding or resizing changes, so old caches are not reused


def load_image(path: str | Path, size: tuple[int, int] | None = None,
               crop: tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array (H, W, 3), oriented by EXIF, centre-cropped to ``crop`` = (height,
    width) in source pixels if given, and resized to ``size`` = (height, width).

    JPEGs are reduced on decode (Pillow's draft) to the smallest DCT scale not below what the target needs.
    """
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
            swapped = orientation in (5, 6, 7, 8)  # rotated by 90 degrees: the stored axes are swapped
            full_w, full_h = (img.height, img.width) if swapped else img.size
            if size is not None and img.format == "JPEG":
                height, width = size
                if crop is not None:  # the crop must still cover the target after reduction
                    height = height * full_h / min(crop[0], full_h)
                    width = width * full_w / min(crop[1], full_w)
                if swapped:
                    height, width = width, height
                img.draft("RGB", (int(np.ceil(width)), int(np.ceil(height))))
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "PA", "LA") else img.convert("RGB")
            if crop is not None:
                scale_h, scale_w = img.height / full_h, img.width / full_w
                ch, cw = min(img.height, round(crop[0] * scale_h)), min(img.width, round(crop[1] * scale_w))
                top, left = (img.height - ch) // 2, (img.width - cw) // 2
                img = img.crop((left, top, left + cw, top + ch))
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError as err:
        raise DataError(f"image {path} not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image {path} cannot be decoded: {err}") from err


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACEMASK_CACHE") or Path.home() / ".cache" / "facemask")


def cache_key(files: list[str], size: tuple[int, int], crop: tuple[int, int] | None = None) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size[0]}x{size[1]} crop={crop}\n".encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.abspath(file)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode_chunk(args: tuple) -> tuple[int, list[tuple[int, str]]]:
    """Decode one chunk (into the memmap at ``path`` when given); returns (count, [(row, problem)])."""
    path, height, width, crop, jobs = args
    array = np.lib.format.open_memmap(path, mode="r+") if path else None
    bad = []
    for row, file in jobs:
        try:
            pixels = load_image(file, (height, width), crop)
        except DataError as err:
            bad.append((row, str(err)))
            continue
        if array is not None:
            array[row] = pixels
    if array is not None:
        array.flush()
    return len(jobs), bad


def _run_chunks(files: list[str], size: tuple[int, int], crop: tuple[int, int] | None, target: str | None,
                workers: int, progress: bool, desc: str) -> list[tuple[str, str]]:
    """Decode every file in parallel chunks with a progress bar; [(file, problem)] for those that failed."""
    chunk = 64
    pairs = list(enumerate(files))
    jobs = [(target, size[0], size[1], crop, pairs[i:i + chunk]) for i in range(0, len(pairs), chunk)]
    workers = workers or cpu_count()
    bad: list[tuple[int, str]] = []
    with tqdm(total=len(files), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for done, problems in pool.map(_decode_chunk, jobs):
                    bar.update(done)
                    bad.extend(problems)
        else:
            for job in jobs:
                done, problems = _decode_chunk(job)
                bar.update(done)
                bad.extend(problems)
    return [(files[row], message) for row, message in sorted(bad)]


def check_images(files: list[str], size: tuple[int, int] = (128, 96), workers: int = 0, progress: bool = True,
                 crop: tuple[int, int] | None = None) -> list[tuple[str, str]]:
    """Decode every image (reduced on decode, so it is quick) and return [(file, problem)] for the bad ones."""
    return _run_chunks(list(files), size, crop, None, workers, progress, "check images")


def build_cache(files: list[str], size: tuple[int, int], cache_dir: str | Path | None = None,
                workers: int = 0, progress: bool = True, crop: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(read-only (N, H, W, 3) uint8 memmap of ``files`` decoded at ``size``, [(file, problem)] for images that
    could not be decoded, whose rows are black). Built once, then reused while no file changes."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(files, size, crop)
    path = cache_dir / f"{key}-{size[0]}x{size[1]}.npy"
    meta = cache_dir / f"{key}.json"
    if not (path.exists() and meta.exists()):
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create the image cache folder {cache_dir}: {err.strerror or err}") from err
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size[0], size[1], 3)).flush()
        try:
            bad = _run_chunks(files, size, crop, str(tmp), workers, progress, f"cache {size[0]}x{size[1]}")
            atomic_write_text(meta, json.dumps({"size": list(size), "files": files, "bad": bad}))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    bad = [tuple(item) for item in json.loads(meta.read_text())["bad"]]
    return np.load(path, mmap_mode="r"), bad
