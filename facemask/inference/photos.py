"""Photos mode of ``facemask predict``: image files and folders (recursive) -> one row per face in a CSV or JSON
file. Files that are not images (by extension) are listed as skipped; an image that cannot be decoded gets a row
with ``status=error``; a photo with no face found gets a row with ``status=no_face``: no input is dropped silently.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from facemask.data.labels import ATTRIBUTES, NUM_CLASSES
from facemask.errors import ConfigError, DataError
from facemask.inference.api import Face, Model
from facemask.io import atomic_write_text

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
OUTPUT_FORMATS = (".csv", ".json")
ANSWERED = ("face", "whole_photo", "fallback")
CHUNK = 256  # photos decoded and answered together (bounds memory on large folders)


@dataclass
class Inputs:
    photos: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def collect(paths: Sequence[str | Path]) -> Inputs:
    """The image files named or found (recursively, sorted) under ``paths``; everything else as skipped."""
    found = Inputs()
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):  # symlinked folders are not followed: no loops
                dirs.sort()
                for name in sorted(files):
                    _add(found, Path(folder) / name)
        elif path.is_file():
            _add(found, path)
        elif path.exists():
            found.skipped.append((str(path), "not a regular file"))
        else:
            raise DataError(f"{path} not found")
    return found


def _add(found: Inputs, path: Path) -> None:
    if path.name.startswith("."):
        found.skipped.append((str(path), "hidden file"))
    elif path.suffix.lower() not in PHOTO_EXTENSIONS:
        found.skipped.append((str(path), f"not an image type facemask reads ({', '.join(PHOTO_EXTENSIONS)})"))
    else:
        found.photos.append(str(path))


def slug(name: str) -> str:
    """A class or attribute value as a column name: "30-59" -> "30_59", ">=60" -> "60plus", "<30" -> "under30"."""
    return name.replace(">=", "").replace("<", "under").replace("-", "_").replace(" ", "_") + \
        ("plus" if name.startswith(">=") else "")


PROB_COLUMNS = [f"p_{attribute}_{slug(name)}" for attribute, names in ATTRIBUTES.items() for name in names]
COLUMNS = ["path", "face", "status", "left", "top", "right", "bottom", "score", "mask", "gender", "age", "class",
           "class_name", *PROB_COLUMNS, *(f"p{i}" for i in range(NUM_CLASSES)), "width", "height", "note"]


def face_row(path: str, index: int | None, face: Face, width: int | None, height: int | None) -> dict:
    row = {"path": path, "face": index, "status": face.status, "score": face.score, "mask": face.mask,
           "gender": face.gender, "age": face.age, "class": face.label, "class_name": face.class_name,
           "width": width, "height": height, "note": face.note}
    if face.box is not None:
        row.update(zip(("left", "top", "right", "bottom"), face.box))
    if face.probs:
        for attribute, names in ATTRIBUTES.items():
            for name in names:
                row[f"p_{attribute}_{slug(name)}"] = face.probs[attribute][name]
        row.update({f"p{i}": p for i, p in enumerate(face.probs["classes"])})
    return row


def predict_photos(model: Model, paths: Sequence[str | Path], out: str | Path, *, workers: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Answer every photo under ``paths`` and write ``out`` (.csv: one row per face; .json: one entry per photo
    with its faces). Returns a summary (photos, faces, skipped, errors, no_face)."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--out {out}: photos mode writes .csv or .json")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the file to write")
    inputs = collect(paths)
    rows, entries = [], []
    for start in range(0, len(inputs.photos), CHUNK):
        chunk = inputs.photos[start:start + CHUNK]
        for path, photo in zip(chunk, model.predict_photos(chunk, workers=workers, errors="report")):
            size = (photo.width, photo.height) if photo.width else (None, None)
            index = 0
            for face in photo.faces:
                answers = face.status in ANSWERED
                rows.append(face_row(path, index if answers else None, face, *size))
                index += answers
            entries.append({"path": path, "width": size[0], "height": size[1],
                            "faces": [face.to_dict() for face in photo.faces]})
        if progress is not None:
            progress(min(start + CHUNK, len(inputs.photos)), len(inputs.photos))
    for path, why in inputs.skipped:
        rows.append({"path": path, "status": "skipped", "note": why})
    statuses = pd.Series([row["status"] for row in rows], dtype=object)
    summary = {"photos": len(inputs.photos), "faces": int(statuses.isin(ANSWERED).sum()),
               "no_face": int((statuses == "no_face").sum()), "errors": int((statuses == "error").sum()),
               "skipped": len(inputs.skipped), "model": model.info}
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps({"model": model.info, "photos": entries,
                                           "skipped": [{"path": p, "why": w} for p, w in inputs.skipped]}, indent=2))
    else:
        atomic_write_text(out, pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False, float_format="%.6g"))
    summary["skipped_files"] = inputs.skipped
    return summary
