"""Robustness to framing: photos re-rendered as if taken otherwise, scored with the run's full prediction path
(decoding, face crop, letterbox, TTA), so that a change is judged by how much it narrows the spread between
framings (``benchmarks/robustness.py``). Score people no checkpoint choice has seen (the eval people).

The framings are made from the photos themselves, assuming the competition's framing: one person, face centred
horizontally at about 45% of the height and about 62% of the photo's width wide (no face detector is involved, so
the check does not depend on the face-crop step it helps to judge). Most of them lie outside what a framing-robust
recipe trains on (JPEG quality 12, 1/12 resolution, a face in a corner where the face-crop fallback is wrong,
rotations); :func:`coverage` says, for a given run, which lie inside its training augmentation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import f1_score

from facemask.config import Config
from facemask.data.images import load_image
from facemask.data.labels import MASK_NAMES, attribute_of
from facemask.data.transforms import preset_names
from facemask.evaluation.metrics import macro_f1

FACE_CENTRE = (0.5, 0.45)  # face centre (x, y) as fractions of the competition photo's width and height
FACE_WIDTH = 0.62  # face width as a fraction of the competition photo's width (the stand-in's and the demo's)
LOW_RES = 12  # the low-resolution framing keeps 1/LOW_RES of each side
JPEG_QUALITY = 12
ROTATION = 15  # degrees, alternating left and right

Framing = Callable[[Image.Image, int], Image.Image]  # (photo, index) -> re-framed photo


def _tight(img: Image.Image, index: int) -> Image.Image:
    """A square face crop (70% of the width), as face datasets and phone face crops frame them."""
    side = round(0.7 * img.width)
    left, top = round(FACE_CENTRE[0] * img.width - side / 2), round(FACE_CENTRE[1] * img.height - side / 2)
    return img.crop((left, top, left + side, top + side))


def _corner(img: Image.Image, index: int) -> Image.Image:
    """Zoomed out to half size and moved to the lower right corner, the rest of the frame continuing the photo's
    edges: the face is far from where the face-crop fallback (and a centre crop) looks for it."""
    small = np.asarray(img.resize((round(img.width * 0.5), round(img.height * 0.5)), Image.BILINEAR))
    bottom, right = 0, 0
    top, left = img.height - small.shape[0], img.width - small.shape[1]
    return Image.fromarray(np.pad(small, ((top, bottom), (left, right), (0, 0)), mode="edge"))


def _aspect(width: float, height: float) -> Framing:
    """The largest crop of that aspect ratio (width:height) around the face: 1:1 and 4:3 landscape photos."""
    def framing(img: Image.Image, index: int) -> Image.Image:
        w = round(min(img.width, img.height * width / height))
        h = round(w * height / width)
        left = round(FACE_CENTRE[0] * img.width - w / 2)
        top = min(max(round(FACE_CENTRE[1] * img.height - h / 2), 0), img.height - h)
        return img.crop((left, top, left + w, top + h))
    return framing


def _low_resolution(img: Image.Image, index: int) -> Image.Image:
    """1/LOW_RES of the resolution (32x43 for a 384x512 photo)."""
    return img.resize((max(8, round(img.width / LOW_RES)), max(8, round(img.height / LOW_RES))), Image.BILINEAR)


def _rotated(img: Image.Image, index: int) -> Image.Image:
    """Rotated by ROTATION degrees about the face, left or right by turns (a tilted head or camera)."""
    angle = ROTATION if index % 2 == 0 else -ROTATION
    centre = (FACE_CENTRE[0] * img.width, FACE_CENTRE[1] * img.height)
    return img.rotate(angle, resample=Image.BILINEAR, center=centre, fillcolor=(128, 128, 128))


# name -> (how the photo is re-framed, JPEG quality it is saved with; 0 = the original file itself)
FRAMINGS: dict[str, tuple[Framing, int]] = {
    "original": (lambda img, i: img, 0),
    "tight_face": (_tight, 95),
    "corner": (_corner, 95),
    "aspect_1:1": (_aspect(1, 1), 95),
    "aspect_4:3": (_aspect(4, 3), 95),
    f"low_res_1/{LOW_RES}": (_low_resolution, 95),
    f"jpeg_q{JPEG_QUALITY}": (lambda img, i: img, JPEG_QUALITY),
    f"rotated_{ROTATION}": (_rotated, 95),
}


def coverage(framing: str, cfg: Config) -> str:
    """Whether ``framing`` lies inside the run's training augmentation: "inside", "outside" or "n/a", with why."""
    presets, aug, data = preset_names(cfg.data.augment), cfg.aug, cfg.data
    face = data.face_crop != "none"
    if framing == "original":
        return "n/a: the competition's framing"
    if framing.startswith("jpeg_q"):
        if "jpeg" in presets and aug.jpeg_quality[0] <= JPEG_QUALITY:
            return f"inside: jpeg preset, quality {aug.jpeg_quality}"
        return f"outside: quality {JPEG_QUALITY}" + (f" below the jpeg preset's {aug.jpeg_quality}" if "jpeg" in
                                                      presets else ", no jpeg preset")
    if framing.startswith("low_res"):
        # how much of the network input's detail the photo still has: the face crop (or the whole photo) in photo
        # pixels over the input's width, at 1/LOW_RES of the original 384 px width
        crop = 384 / LOW_RES * (FACE_WIDTH * (1 + 2 * data.face_margin) if face else 1.0)
        factor = min(1.0, crop / data.width)
        if "lowres" in presets and aug.lowres_factor[0] <= factor:
            return f"inside: lowres preset {aug.lowres_factor} covers a factor of {factor:.2f}"
        return f"outside: a factor of {factor:.2f}" + (f" below the lowres preset's {aug.lowres_factor}" if "lowres"
                                                        in presets else ", no lowres preset")
    if framing.startswith("rotated"):
        if "affine" in presets and aug.degrees >= ROTATION:
            return f"inside: affine preset, {aug.degrees} degrees"
        return f"outside: {ROTATION} degrees" + (f" beyond the affine preset's {aug.degrees}" if "affine" in presets
                                                 else ", no rotation in training")
    if framing == "corner":
        if face:
            return "outside where the detector misses the face: the fallback crop assumes a centred face"
        reach = aug.framing_translate if "framing" in presets else 0.0
        return "inside: framing preset" if reach >= 0.25 and aug.framing_scale[0] <= 0.5 else \
            "outside: a shift of 25% and zoom 0.5 beyond the framing preset"
    if face:
        return "inside: the face crop frames the face alike (when it is found)"
    if "framing" in presets or "resized_crop" in presets:
        return "partly: framing / resized_crop presets"
    return "outside: no framing augmentation"


def render(files: Sequence[str], framing: str, out_dir: str | Path) -> list[str]:
    """The photos re-framed as ``framing``, written under ``out_dir`` (reused when already there)."""
    reframe, quality = FRAMINGS[framing]
    if not quality:
        return list(files)
    out_dir = Path(out_dir) / framing.replace(":", "x").replace("/", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = []
    for i, file in enumerate(files):
        target = out_dir / f"{i:06d}.jpg"
        if not target.exists():
            image = reframe(Image.fromarray(load_image(file)), i)
            tmp = target.with_name(f".{target.name}.tmp")
            image.save(tmp, format="JPEG", quality=quality)
            tmp.replace(target)
        rendered.append(str(target))
    return rendered


def framing_scores(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Macro F1 over the 18 classes and over the 3 mask classes (worn / incorrect / not worn)."""
    return {"macro_f1": macro_f1(labels, predictions),
            "mask_f1": float(f1_score(attribute_of(labels, "mask"), attribute_of(predictions, "mask"),
                                      average="macro", labels=list(range(len(MASK_NAMES))),
                                      zero_division=0))}


def robustness_table(predict: Callable[[list[str]], np.ndarray], files: Sequence[str], labels: Sequence[int],
                     out_dir: str | Path, framings: Sequence[str] = tuple(FRAMINGS),
                     cfg: Config | None = None) -> pd.DataFrame:
    """One row per framing: macro F1, mask F1, the mask-F1 change from the original framing and (with the run's
    ``cfg``) whether the framing lies inside its training augmentation. ``predict(files)`` returns labels."""
    labels = np.asarray(labels)
    rows = []
    for name in framings:
        scores = framing_scores(labels, np.asarray(predict(render(files, name, out_dir))))
        rows.append({"framing": name, **scores})
    table = pd.DataFrame(rows)
    reference = table.loc[table.framing == "original", "mask_f1"]
    if len(reference):
        table["mask_f1_change"] = table["mask_f1"] - reference.iloc[0]
    if cfg is not None:
        table["training"] = [coverage(name, cfg) for name in table.framing]
    return table
