"""Decoding (EXIF orientation, any colour mode -> RGB, JPEG reduce-on-decode) and the decoded-image cache.

The cache holds every image of a table decoded and resized once, as one uint8 memory-mapped array per input size.
It is keyed by the files' paths, sizes and modification times, so a changed file gives a new key and is re-read;
it is reused across epochs, runs and processes and built in parallel with a progress bar.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from facemask.errors import ConfigError, DataError
from facemask.io import atomic_write_text, cpu_count, describe_write_error, first_line

CACHE_VERSION = 4  # bump when decoding or resizing changes, so old caches are not reused
FILL = 128  # grey of letterbox bars and of face crops reaching outside the photo (about 0 after normalising)


@dataclass(frozen=True)
class Decoding:
    """How a photo becomes the network's pixels, before any augmentation. It is the same for training, evaluation
    and prediction (built from the run's config by facemask.data.loaders.decoding_of) and part of the cache key."""

    crop: tuple[int, int] | None = None  # centre crop (height, width) in source pixels (the baseline's)
    resize: str = "stretch"  # stretch to the input size | letterbox: keep the aspect ratio, pad with grey
    face: str = "none"  # face detector for the face-crop step (facemask.data.faces), or none
    face_margin: float = 0.4  # face crop: margin around the detected face, as a fraction of its size per side
    face_fallback: float = 0.52  # face crop: face width assumed when none is found (fraction of the shorter side)

    def __post_init__(self):
        if self.resize not in ("stretch", "letterbox"):
            raise ConfigError(f"unknown option data.resize={self.resize!r} (known: stretch, letterbox)")
        if not self.face_margin >= 0:
            raise ConfigError(f"data.face_margin={self.face_margin} must be >= 0")
        if not self.face_fallback > 0:
            raise ConfigError(f"data.face_fallback={self.face_fallback} must be > 0")


ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own bomb limit (about 9459 x 9459)
# The formats facemask decodes: never EPS (Pillow hands it to Ghostscript) nor Pillow's rarely used parsers.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG includes MPO (multi-picture) files
_OPEN_LOCK = threading.Lock()
HIGH_BIT_MODES = {"I;16": 257.0, "I;16L": 257.0, "I;16B": 257.0, "I;16N": 257.0}


def load_image(path: ImageSource, size: tuple[int, int] | None = None, decoding: Decoding | None = None
               ) -> np.ndarray:
    """Decode ``path`` (a file, encoded bytes, a PIL image or an RGB array) to an RGB uint8 array (H, W, 3):
    oriented by EXIF, then cropped and resized to ``size`` = (height, width) as ``decoding`` says (default:
    stretched to ``size``; no ``size``: the full photo)."""
    return decode(path, size, decoding or Decoding())[0]


def source_name(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return f"image {source}"
    return {bytes: "uploaded image", np.ndarray: "image array"}.get(type(source), "PIL image")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: palettes and alpha through RGBA, 16-bit greyscale scaled down (Pillow's own
    conversion clips it, so a 16-bit PNG would be solid white), 32-bit integer and float greyscale clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in HIGH_BIT_MODES or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float32)
        if img.mode in HIGH_BIT_MODES or (img.mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0  # 0..65535 -> 0..255
        grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ("P", "PA", "LA"):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def _array_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise DataError(f"image array of shape {array.shape} and type {array.dtype}: expected uint8 (H, W, 3) RGB, "
                        "(H, W) grey or (H, W, 4) RGBA")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.size == 0:
        raise DataError(f"image array of shape {array.shape} is empty")
    return Image.fromarray(np.ascontiguousarray(array))


@contextlib.contextmanager
def open_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS):
    """A Pillow image of ``source``, refusing images larger than ``max_pixels`` before their pixels are read
    (a PNG header can claim 30000 x 30000: a decompression bomb) and formats other than FORMATS. Errors are
    DataErrors naming the source."""
    name = source_name(source)
    try:
        if isinstance(source, np.ndarray):
            img = _array_image(source)
        elif isinstance(source, Image.Image):
            img = source
        else:
            # Pillow warns about a bomb while it reads the header (and raises past twice its limit). Warning filters
            # are process-wide, so the filter is set under a lock, around the header read only (threads decode).
            with _OPEN_LOCK, warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS)
        with img if not isinstance(source, Image.Image) else contextlib.nullcontext(img):
            if img.width * img.height > max_pixels:
                raise DataError(f"{name} is {img.width}x{img.height} pixels, more than facemask decodes here "
                                f"({max_pixels / 1e6:.0f} Mpx): a decompression bomb, or a photo to shrink first")
            if img.width < 1 or img.height < 1:
                raise DataError(f"{name} is empty ({img.width}x{img.height} pixels)")
            yield img
    except FileNotFoundError as err:
        raise DataError(f"{name} not found") from err
    except IsADirectoryError as err:
        raise DataError(f"{name} is a folder, not an image") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{name} is larger than facemask decodes here ({max_pixels / 1e6:.0f} Mpx): "
                        f"a decompression bomb, or a photo to shrink first") from err
    except UnidentifiedImageError as err:
        raise DataError(f"{name} cannot be decoded: not an image format facemask reads (JPEG, PNG, WebP, BMP, GIF, "
                        "TIFF)") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise DataError(f"{name} cannot be decoded: {first_line(err)}") from err


def read_rgb(source: ImageSource, draft: tuple[int, int] | None = None,
             max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The whole photo as an RGB Pillow image, oriented by EXIF; ``draft`` = (height, width): a JPEG may be
    reduced on decode to no less than that. Larger than ``max_pixels``: a DataError."""
    with open_image(source, max_pixels) as img:
        if draft is not None and img.format == "JPEG":
            swapped = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            height, width = (draft[1], draft[0]) if swapped else draft
            img.draft("RGB", (int(np.ceil(width)), int(np.ceil(height))))
        try:
            return _to_rgb(ImageOps.exif_transpose(img))
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
            raise DataError(f"{source_name(source)} cannot be decoded: {first_line(err)}") from err


def decode(path: ImageSource, size: tuple[int, int] | None, decoding: Decoding) -> tuple[np.ndarray, bool | None]:
    """(pixels, face found: None when the face-crop step is off). See :func:`load_image`.

    JPEGs are reduced on decode (Pillow's draft) to the smallest DCT scale not below what the target needs
    (not with the face-crop step, whose crop is only known after detection).
    """
    crop = decoding.crop
    found = None
    with open_image(path) as img:
        orientation = img.getexif().get(0x0112, 1)
        swapped = orientation in (5, 6, 7, 8)  # rotated by 90 degrees: the stored axes are swapped
        full_w, full_h = (img.height, img.width) if swapped else img.size
        if size is not None and img.format == "JPEG" and decoding.face == "none":
            height, width = size
            if crop is not None:  # the crop must still cover the target after reduction
                height = height * full_h / min(crop[0], full_h)
                width = width * full_w / min(crop[1], full_w)
            if swapped:
                height, width = width, height
            img.draft("RGB", (int(np.ceil(width)), int(np.ceil(height))))
        try:
            img = _to_rgb(ImageOps.exif_transpose(img))
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
            raise DataError(f"{source_name(path)} cannot be decoded: {first_line(err)}") from err
    if crop is not None:
        scale_h, scale_w = img.height / full_h, img.width / full_w
        ch, cw = min(img.height, round(crop[0] * scale_h)), min(img.width, round(crop[1] * scale_w))
        top, left = (img.height - ch) // 2, (img.width - cw) // 2
        img = img.crop((left, top, left + cw, top + ch))
    if decoding.face != "none":
        img, found = _face_crop(img, size, decoding)
    return fit(img, size, decoding), found


def fit(img: Image.Image, size: tuple[int, int] | None, decoding: Decoding) -> np.ndarray:
    """The network's pixels: ``img`` stretched or letterboxed to ``size`` (None: as it is)."""
    if size is not None and img.size != (size[1], size[0]):
        img = _letterbox(img, size) if decoding.resize == "letterbox" else \
            img.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).copy()


def _letterbox(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to fit inside ``size`` keeping the aspect ratio, centred on grey bars."""
    height, width = size
    scale = min(height / img.height, width / img.width)
    fit = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", (width, height), (FILL, FILL, FILL))
    canvas.paste(img.resize(fit, Image.BILINEAR, reducing_gap=None), ((width - fit[0]) // 2, (height - fit[1]) // 2))
    return canvas


def crop_padded(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``img`` cropped to ``box`` (left, top, right, bottom), grey where the box reaches outside it."""
    left, top, right, bottom = box
    canvas = Image.new("RGB", (right - left, bottom - top), (FILL, FILL, FILL))
    canvas.paste(img, (-left, -top))
    return canvas


def face_input(img: Image.Image, face: tuple[float, float, float, float], size: tuple[int, int],
               decoding: Decoding) -> np.ndarray:
    """The network's pixels for one face box of a photo, framed as training framed its face: the run's margin,
    grown to the input's aspect, grey outside the photo, then stretched or letterboxed to ``size``."""
    from facemask.data.faces import crop_box

    return fit(crop_padded(img, crop_box(face, size[0] / size[1], decoding.face_margin)), size, decoding)


def _face_crop(img: Image.Image, size: tuple[int, int] | None, decoding: Decoding) -> tuple[Image.Image, bool]:
    """Crop around the detected face (grey where the crop reaches outside the photo)."""
    from facemask.data.faces import face_box, get_detector

    aspect = size[0] / size[1] if size else img.height / img.width
    box, found = face_box(np.asarray(img), get_detector(decoding.face), aspect, decoding.face_margin,
                          decoding.face_fallback)
    return crop_padded(img, box), found


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACEMASK_CACHE") or Path.home() / ".cache" / "facemask")


def cache_key(files: list[str], size: tuple[int, int], decoding: Decoding) -> str:
    detector = ""
    if decoding.face != "none":
        from facemask.data.faces import detector_id

        detector = detector_id(decoding.face)
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size[0]}x{size[1]} {sorted(asdict(decoding).items())} {detector}\n"
                            .encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.abspath(file)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode_chunk(args: tuple) -> tuple[int, list[tuple[int, str]], list[int]]:
    """Decode one chunk (into the memmap at ``path`` when given); (count, [(row, problem)], rows with no face)."""
    path, height, width, decoding, trusted, jobs = args
    from facemask.data.faces import trust_detector

    for name in trusted:  # a worker started afresh (spawn, forkserver) must know what the user allowed
        trust_detector(name)
    array = np.lib.format.open_memmap(path, mode="r+") if path else None
    bad, no_face = [], []
    for row, file in jobs:
        try:
            pixels, found = decode(file, (height, width), decoding)
        except DataError as err:
            bad.append((row, str(err)))
            continue
        if found is False:
            no_face.append(row)
        if array is not None:
            array[row] = pixels
    if array is not None:
        array.flush()
    return len(jobs), bad, no_face


def _run_chunks(files: list[str], size: tuple[int, int], decoding: Decoding, target: str | None,
                workers: int, progress: bool, desc: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Decode every file in parallel chunks with a progress bar: ([(file, problem)], [file with no face found])."""
    from facemask.data.faces import trusted_detectors

    chunk = 64
    pairs = list(enumerate(files))
    trusted = trusted_detectors()
    jobs = [(target, size[0], size[1], decoding, trusted, pairs[i:i + chunk]) for i in range(0, len(pairs), chunk)]
    workers = workers or cpu_count()
    bad: list[tuple[int, str]] = []
    no_face: list[int] = []
    parallel = workers > 1 and len(jobs) > 1
    try:
        with tqdm(total=len(files), desc=desc, unit="img", disable=not progress, leave=False) as bar, \
                (ProcessPoolExecutor(workers) if parallel else contextlib.nullcontext()) as pool:
            for done, problems, faceless in (pool.map if parallel else map)(_decode_chunk, jobs):
                bar.update(done)
                bad.extend(problems)
                no_face.extend(faceless)
    except BrokenProcessPool as err:  # a worker killed (out of memory, SIGBUS on a full disk under the memmap)
        where = f" while writing the image cache {target}" if target else ""
        raise DataError(f"a decoding worker process died{where} (out of memory or disk space?)") from err
    return [(files[row], message) for row, message in sorted(bad)], [files[row] for row in sorted(no_face)]


def check_images(files: list[str], size: tuple[int, int] = (128, 96), workers: int = 0, progress: bool = True,
                 decoding: Decoding | None = None) -> list[tuple[str, str]]:
    """Decode every image (reduced on decode, so it is quick) and return [(file, problem)] for the bad ones."""
    return _run_chunks(list(files), size, decoding or Decoding(), None, workers, progress, "check images")[0]


def find_faceless(files: list[str], detector: str, size: tuple[int, int] = (128, 96), workers: int = 0,
                  progress: bool = True) -> list[str]:
    """The files in which ``detector`` finds no face (for the detection rate; nothing is cached)."""
    desc = f"detect faces ({detector})"
    return _run_chunks(list(files), size, Decoding(face=detector), None, workers, progress, desc)[1]


def build_cache(files: list[str], size: tuple[int, int], cache_dir: str | Path | None = None,
                workers: int = 0, progress: bool = True, decoding: Decoding | None = None
                ) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(read-only (N, H, W, 3) uint8 memmap of ``files`` decoded at ``size``, [(file, problem)] for images that
    could not be decoded, whose rows are black). Built once, then reused while no file changes."""
    return _cache(files, size, cache_dir, workers, progress, decoding or Decoding())[:2]


def cache_faces(files: list[str], size: tuple[int, int], cache_dir: str | Path | None = None, workers: int = 0,
                progress: bool = True, decoding: Decoding | None = None) -> list[str]:
    """The files in which the face-crop step found no face (it used its fallback crop); builds the cache if needed."""
    return _cache(files, size, cache_dir, workers, progress, decoding or Decoding())[2]


def _cache(files: list[str], size: tuple[int, int], cache_dir: str | Path | None, workers: int, progress: bool,
           decoding: Decoding) -> tuple[np.ndarray, list[tuple[str, str]], list[str]]:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(files, size, decoding)
    path = cache_dir / f"{key}-{size[0]}x{size[1]}.npy"
    meta = cache_dir / f"{key}.json"
    if not (path.exists() and meta.exists()):
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create the image cache folder {cache_dir}: {err.strerror or err}") from err
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _allocate(tmp, (len(files), size[0], size[1], 3))
            desc = f"cache {size[0]}x{size[1]}" + (" (face crop)" if decoding.face != "none" else "")
            bad, no_face = _run_chunks(files, size, decoding, str(tmp), workers, progress, desc)
            atomic_write_text(meta, json.dumps({"size": list(size), "decoding": asdict(decoding), "files": files,
                                                "bad": bad, "no_face": no_face}))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    try:
        info = json.loads(meta.read_text())
        return np.load(path, mmap_mode="r"), [tuple(item) for item in info["bad"]], info.get("no_face", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"the image cache {path} is unreadable ({first_line(err)}): delete it (and {meta.name}) "
                        "to rebuild it") from err


def _allocate(path: Path, shape: tuple[int, ...]) -> None:
    """An uninitialised .npy file of ``shape`` uint8 with its disk space reserved now, so that a full disk is one
    clear error here rather than a worker killed by SIGBUS halfway through filling the memory map."""
    try:
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()
        with open(path, "r+b") as fh:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as err:
        raise DataError(f"cannot write the image cache in {path.parent}: {describe_write_error(err)}") from err
