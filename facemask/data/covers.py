"""Where each training photo's mask is, found from the same person's bare face (the ``normal`` photo).

The competition layout gives every person a photo without a mask beside the masked ones. Aligned onto a masked
photo, it shows the face under the mask; where the two differ is the mask. The ``mask_restyle`` preset
(facemask.data.batch_transforms) uses both to redraw a training photo's mask in another width, length, colour and
pattern while the skin around it stays the person's own, so that "worn" has to rest on where the mask is, not on
what the training set's masks look like.

Computed once per decoded-image cache, from the cached face crops, and cached beside it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

from facemask.data.labels import MASK_NAMES
from facemask.errors import DataError
from facemask.io import atomic_write_text, describe_write_error

COVERS_VERSION = 1  # bump when the alignment or the cover changes in a way the constants below do not show
STEPS, LEARNING_RATE, ROBUST_EPS = 200, 0.01, 1e-3  # the alignment's Adam steps and rate, Charbonnier's epsilon
THRESHOLD = 25.0  # mean absolute difference (0..255, smoothed) above which a pixel is the mask's
SMOOTH, CLOSING, EDGE = 1.0, 2, 0.7  # the difference's blur, the region's closing steps, the cover's soft edge
MAX_RESIDUAL = 14.0  # mean difference outside the cover above which the alignment failed (no cover kept)
AREA = (0.02, 0.6)  # a cover outside this share of the crop is no mask (no cover kept)
BATCH = 256
SETTINGS = (COVERS_VERSION, STEPS, LEARNING_RATE, ROBUST_EPS, THRESHOLD, SMOOTH, CLOSING, EDGE, MAX_RESIDUAL, AREA,
            BATCH)  # all in the cache key, with the torch and scipy versions


def align(bare: torch.Tensor, photo: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """``bare`` (N, 3, H, W, float 0..255) warped onto ``photo`` by an affine map with a gain and an offset,
    fitted where the two agree (a robust loss, so the mask does not pull the fit), at half resolution.

    Written by hand: the project's dependencies hold no image registration, and OpenCV's ECC would need OpenCV for
    this one step and a mask of where to fit, which is what is being looked for."""
    n = len(bare)
    small_bare = F.interpolate(bare, scale_factor=0.5, mode="area")
    small_photo = F.interpolate(photo, scale_factor=0.5, mode="area")
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).repeat(n, 1, 1).requires_grad_(True)
    gain = torch.tensor([1.0, 0.0]).repeat(n, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([theta, gain], lr=LEARNING_RATE)
    with torch.enable_grad():
        for _ in range(steps):
            warped = _warp(small_bare, theta, gain)
            loss = ((((warped - small_photo) / 255) ** 2 + ROBUST_EPS).sqrt()).mean()  # Charbonnier: robust
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return _warp(bare, theta.detach(), gain.detach()).clamp(0, 255)


def _warp(images: torch.Tensor, theta: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    return warped * gain[:, 0, None, None, None] + gain[:, 1, None, None, None] * 255


def cover_of(aligned: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """(H, W) float 0..1: where ``photo`` differs from the bare face aligned onto it, as one filled region with a
    soft edge; all zeros when the alignment failed or the region is too small or too large to be a mask."""
    difference = ndimage.gaussian_filter(np.abs(aligned - photo).mean(axis=2), SMOOTH)
    region = difference > THRESHOLD
    labels, count = ndimage.label(region)
    if not count:
        return np.zeros(region.shape, np.float32)
    sizes = ndimage.sum(region, labels, range(1, count + 1))
    region = labels == 1 + int(np.argmax(sizes))  # the largest region: stray pixels elsewhere are not the mask
    region = ndimage.binary_fill_holes(ndimage.binary_closing(region, iterations=CLOSING))
    if not AREA[0] <= region.mean() <= AREA[1] or difference[~region].mean() > MAX_RESIDUAL:
        return np.zeros(region.shape, np.float32)
    return np.clip(ndimage.gaussian_filter(region.astype(np.float32), EDGE), 0, 1)


def pairs_of(samples: pd.DataFrame, bad: set[str] = frozenset()) -> list[tuple[int, int]]:
    """(row of a masked photo, row of the same person's bare photo) for every worn or incorrectly worn mask whose
    person has a bare photo; rows index ``samples`` (and the image cache built from its files). Photos in ``bad``
    (undecodable: black rows of the cache) take no part."""
    bare_state = MASK_NAMES.index("not wear")
    table = samples.reset_index(drop=True)
    usable = [file not in bad for file in table["file"]] if "file" in table else [True] * len(table)
    bare_row = {person: row for row, (person, mask, ok) in enumerate(zip(table["person"], table["mask"], usable))
                if mask == bare_state and ok}
    return [(row, bare_row[person])
            for row, (person, mask, ok) in enumerate(zip(table["person"], table["mask"], usable))
            if mask != bare_state and ok and person in bare_row]


def find_covers(pixels: np.ndarray, pairs: list[tuple[int, int]], progress: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 4) uint8: for each masked row of ``pairs``, its bare face aligned onto it (RGB) and its cover
    (alpha, 0..255); zeros elsewhere. ``pixels`` is the (N, H, W, 3) image cache."""
    out = np.zeros((*pixels.shape[:3], 4), np.uint8) if out is None else out
    with tqdm(total=len(pairs), desc="find masks", unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, len(pairs), BATCH):
            chunk = pairs[start:start + BATCH]
            photos = np.stack([pixels[row] for row, _ in chunk]).astype(np.float32)
            bares = np.stack([pixels[row] for _, row in chunk]).astype(np.float32)
            aligned = align(torch.from_numpy(bares).permute(0, 3, 1, 2),
                            torch.from_numpy(photos).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
            for (row, _), warped, photo in zip(chunk, aligned, photos):
                cover = cover_of(warped, photo)
                out[row, ..., :3] = np.round(warped)
                out[row, ..., 3] = np.round(cover * 255)
            bar.update(len(chunk))
    return out


def covers_key(image_key: str, samples: pd.DataFrame, bad: set[str] = frozenset()) -> str:
    """The image cache's key (its files, sizes, times and decoding), each row's person and mask state, the photos
    left out, every setting of the search and the library versions that compute it."""
    import scipy

    digest = hashlib.sha256(f"covers {SETTINGS} torch {torch.__version__} scipy {scipy.__version__} {image_key}\n"
                            .encode())
    for person, mask in zip(samples["person"], samples["mask"]):
        digest.update(f"{person}\t{mask}\n".encode())
    for file in sorted(bad):
        digest.update(f"bad\t{file}\n".encode())
    return digest.hexdigest()[:24]


def uses_covers(augment: str) -> bool:
    """Whether ``data.augment`` holds a preset that needs the covers."""
    from facemask.data.batch_transforms import COVERED
    from facemask.data.transforms import preset_names

    return any(name in COVERED for name in preset_names(augment))


def covers_path(pixels: np.ndarray, samples: pd.DataFrame, bad: set[str] = frozenset()) -> Path:
    """Where the covers of an image cache (a memory-mapped .npy file) are kept: beside it, keyed by its name."""
    image_file = Path(getattr(pixels, "filename", "") or "")
    if not image_file.name:
        raise DataError("the mask covers are found from the image cache: data.cache must be true")
    return image_file.with_name(f"{covers_key(image_file.name, samples, bad)}-covers.npy")


def load_covers(pixels: np.ndarray, samples: pd.DataFrame, bad: set[str] = frozenset(), progress: bool = True
                ) -> np.ndarray:
    """The covers of ``samples`` (rows of the image cache ``pixels``), found once and cached beside it."""
    from facemask.data.images import _allocate

    path = covers_path(pixels, samples, bad)
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _allocate(tmp, (*pixels.shape[:3], 4))  # the disk space reserved now: a full disk is one clear error
            array = np.lib.format.open_memmap(tmp, mode="r+")
            pairs = pairs_of(samples, bad)
            find_covers(pixels, pairs, progress=progress, out=array)
            array.flush()
            found = int(sum(array[row, ..., 3].any() for row, _ in pairs))
            del array
            atomic_write_text(meta, json.dumps({"version": COVERS_VERSION, "masked": len(pairs), "found": found}))
            os.replace(tmp, path)
        except OSError as err:
            raise DataError(f"cannot write the mask covers in {path.parent}: {describe_write_error(err)}") from err
        finally:
            if tmp.exists():
                tmp.unlink()
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"the mask covers {path} are unreadable: delete the file to find them again") from err


def covers_found(pixels: np.ndarray, samples: pd.DataFrame, bad: set[str] = frozenset()) -> tuple[int, int]:
    """(masked photos with a bare photo of their person, covers found among them), from the cached file's notes."""
    info = json.loads(covers_path(pixels, samples, bad).with_suffix(".json").read_text())
    return info["masked"], info["found"]
