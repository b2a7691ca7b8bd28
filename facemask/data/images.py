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
from facemask.utils import cpu_count

CACHE_VERSION = 1  # bump when decoding or resizing changes, so old caches are not reused


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array (H, W, 3), oriented by EXIF and resized to ``size`` = (height, width).

    JPEGs are reduced on decode (Pillow's draft) to the smallest DCT scale not below the target size.
    """
    try:
        with Image.open(path) as img:
            if size is not None and img.format == "JPEG":
                height, width = size
                orientation = img.getexif().get(0x0112, 1)
                if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the stored axes are swapped
                    height, width = width, height
                img.draft("RGB", (width, height))
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "PA", "LA") else img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError as err:
        raise DataError(f"image {path} not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image {path} cannot be decoded: {err}") from err


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACEMASK_CACHE") or Path.home() / ".cache" / "facemask")


def cache_key(files: list[str], size: tuple[int, int]) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size[0]}x{size[1]}\n".encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.abspath(file)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode_into(args: tuple[str, int, int, list[tuple[int, str]]]) -> int:
    path, height, width, jobs = args
    array = np.lib.format.open_memmap(path, mode="r+")
    for row, file in jobs:
        array[row] = load_image(file, (height, width))
    array.flush()
    return len(jobs)


def build_cache(files: list[str], size: tuple[int, int], cache_dir: str | Path | None = None,
                workers: int = 0, progress: bool = True) -> np.ndarray:
    """A read-only (N, H, W, 3) uint8 memmap of ``files`` decoded at ``size``; built once, then reused."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(files, size)
    path = cache_dir / f"{key}-{size[0]}x{size[1]}.npy"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size[0], size[1], 3)).flush()
        workers = workers or cpu_count()
        chunk = 64
        pairs = list(enumerate(files))
        jobs = [(str(tmp), size[0], size[1], pairs[i:i + chunk]) for i in range(0, len(pairs), chunk)]
        try:
            bar = tqdm(total=len(files), desc=f"cache {size[0]}x{size[1]}", unit="img", disable=not progress)
            if workers > 1 and len(jobs) > 1:
                with ProcessPoolExecutor(workers) as pool:
                    for done in pool.map(_decode_into, jobs):
                        bar.update(done)
            else:
                for job in jobs:
                    bar.update(_decode_into(job))
            bar.close()
            (cache_dir / f"{key}.json").write_text(json.dumps({"size": size, "files": files}))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return np.load(path, mmap_mode="r")
