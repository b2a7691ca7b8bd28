"""Robustness to framing: a run's validation people re-rendered as photos framed unlike the competition's, scored
with the full prediction path (decoding, face crop, letterbox, TTA), so a change is judged by how much it narrows
the spread between framings (``benchmarks/robustness.py``).

The framings are made from the photos themselves, assuming the competition's framing: one person, face centred
horizontally at about 45% of the height and about 62% of the photo's width wide (no face detector is involved, so
the check does not depend on the face-crop step it helps to judge).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import f1_score

from facemask.data.images import load_image
from facemask.data.labels import MASK_NAMES, attribute_of
from facemask.evaluation.metrics import macro_f1

FACE_CENTRE = (0.5, 0.45)  # face centre (x, y) as fractions of the competition photo's width and height

Framing = Callable[[Image.Image], Image.Image]


def _tight(img: Image.Image) -> Image.Image:
    """A square face crop (70% of the width), as face datasets and phone face crops frame them."""
    side = round(0.7 * img.width)
    left, top = round(FACE_CENTRE[0] * img.width - side / 2), round(FACE_CENTRE[1] * img.height - side / 2)
    return img.crop((left, top, left + side, top + side))


def _off_centre(img: Image.Image) -> Image.Image:
    """Zoomed out to 60% and moved to the upper left, the rest of the frame continuing the photo's edges."""
    small = np.asarray(img.resize((round(img.width * 0.6), round(img.height * 0.6)), Image.BILINEAR))
    top, left = round(0.08 * img.height), 0
    bottom, right = img.height - top - small.shape[0], img.width - left - small.shape[1]
    return Image.fromarray(np.pad(small, ((top, bottom), (left, right), (0, 0)), mode="edge"))


def _aspect(width: float, height: float) -> Framing:
    """The largest crop of that aspect ratio (width:height) around the face: 1:1 and 4:3 landscape photos."""
    def framing(img: Image.Image) -> Image.Image:
        w = round(min(img.width, img.height * width / height))
        h = round(w * height / width)
        left = round(FACE_CENTRE[0] * img.width - w / 2)
        top = min(max(round(FACE_CENTRE[1] * img.height - h / 2), 0), img.height - h)
        return img.crop((left, top, left + w, top + h))
    return framing


def _low_resolution(img: Image.Image) -> Image.Image:
    """One sixth of the resolution (64x85 for a 384x512 photo)."""
    return img.resize((max(8, round(img.width / 6)), max(8, round(img.height / 6))), Image.BILINEAR)


# name -> (how the photo is re-framed, JPEG quality it is saved with)
FRAMINGS: dict[str, tuple[Framing, int]] = {
    "original": (lambda img: img, 0),  # 0 = the original file itself
    "tight_face": (_tight, 95),
    "off_centre": (_off_centre, 95),
    "aspect_1:1": (_aspect(1, 1), 95),
    "aspect_4:3": (_aspect(4, 3), 95),
    "low_res": (_low_resolution, 95),
    "jpeg_q30": (lambda img: img, 30),
}


def render(files: Sequence[str], framing: str, out_dir: str | Path) -> list[str]:
    """The photos re-framed as ``framing``, written under ``out_dir`` (reused when already there)."""
    reframe, quality = FRAMINGS[framing]
    if not quality:
        return list(files)
    out_dir = Path(out_dir) / framing.replace(":", "x")
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = []
    for i, file in enumerate(files):
        target = out_dir / f"{i:06d}.jpg"
        if not target.exists():
            image = reframe(Image.fromarray(load_image(file)))
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
                     out_dir: str | Path, framings: Sequence[str] = tuple(FRAMINGS)) -> pd.DataFrame:
    """One row per framing: macro F1, mask F1 and the mask-F1 change from the original framing.
    ``predict(files)`` returns predicted labels."""
    labels = np.asarray(labels)
    rows = []
    for name in framings:
        scores = framing_scores(labels, np.asarray(predict(render(files, name, out_dir))))
        rows.append({"framing": name, **scores})
    table = pd.DataFrame(rows)
    reference = table.loc[table.framing == "original", "mask_f1"]
    if len(reference):
        table["mask_f1_change"] = table["mask_f1"] - reference.iloc[0]
    return table
