"""Read the competition layout into tables of samples.

train/train.csv       id,gender,race,age,path
train/images/<path>/  mask1..mask5, incorrect_mask, normal  (.jpg/.jpeg/.png; dot-files ignored)
eval/info.csv         ImageID,ans
eval/images/<ImageID>
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from facemask.data.labels import DEFAULT_AGE_THRESHOLDS, GENDER_OF_NAME, IMAGE_STEMS, MASK_OF_STEM, age_group, encode
from facemask.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
SAMPLE_COLUMNS = ["person", "stem", "file", "gender", "age", "mask", "age_group", "label"]


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path} not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable CSV: {str(err).splitlines()[0]}") from err
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r} (columns: {', '.join(df.columns)})")
    return df


def inside(name: str) -> bool:
    """A relative name that stays inside its folder (no absolute path, no ``..`` leading out, not empty)."""
    if not name or Path(name).is_absolute() or name.startswith(("/", "\\")) or ":" in name[:3]:
        return False
    normal = os.path.normpath(name)
    return normal != "." and not normal.startswith("..")


def find_train_root(root: str | Path) -> Path:
    """Accept either the ``train`` folder itself or the folder above it."""
    root = Path(root)
    if (root / "train.csv").is_file():
        return root
    if (root / "train" / "train.csv").is_file():
        return root / "train"
    raise DataError(f"{root} holds no train.csv (expected {root}/train.csv or {root}/train/train.csv)")


def _people_table(csv_path: Path, problems: list[str]) -> pd.DataFrame:
    """train.csv as a checked table (person, gender 0/1, age, folder); bad rows are reported and left out."""
    df = _read_csv(csv_path, TRAIN_COLUMNS)
    if df.empty:
        raise DataError(f"{csv_path} lists no people")
    keep = []
    seen: set[str] = set()
    ids: dict[str, int] = {}
    for row, rec in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        where = f"{csv_path} line {row} (folder {rec.path})"
        person = rec.id.strip()
        if rec.gender.strip().lower() not in GENDER_OF_NAME:
            problems.append(f"{where}: unknown gender {rec.gender!r} (expected male or female)")
        elif not rec.age.strip().isdigit():
            problems.append(f"{where}: age {rec.age!r} is not a whole number")
        elif not person:
            problems.append(f"{where}: the id is empty")
        elif not inside(rec.path.strip()):
            problems.append(f"{where}: path {rec.path!r} leaves the images/ folder")
        elif rec.path.strip() in seen:
            problems.append(f"{where}: folder {rec.path} is listed twice")
        elif person in ids:
            problems.append(f"{where}: id {person} is also on line {ids[person]}: two folders would be merged "
                            "into one person")
        else:
            keep.append(row - 2)
            seen.add(rec.path.strip())
            ids[person] = row
    df = df.iloc[keep]
    return pd.DataFrame({
        "person": df["id"].str.strip(),
        "gender": df["gender"].str.strip().str.lower().map(GENDER_OF_NAME).astype(int),
        "age": df["age"].str.strip().astype(int),
        "folder": df["path"].str.strip(),
    })


def person_images(folder: Path, problems: list[str]) -> dict[str, Path]:
    """The images of one person folder by stem; each missing, duplicated or unexpected image is a problem."""
    if not folder.is_dir():
        problems.append(f"person folder {folder} listed in train.csv does not exist")
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        stem, ext = path.stem, path.suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            continue
        if stem not in MASK_OF_STEM:
            problems.append(f"person folder {folder}: unexpected image {path.name} "
                            f"(expected {', '.join(IMAGE_STEMS)})")
        elif stem in found:
            problems.append(f"person folder {folder}: {stem} appears twice ({found[stem].name}, {path.name})")
        else:
            found[stem] = path
    for stem in IMAGE_STEMS:
        if stem not in found:
            problems.append(f"person folder {folder}: image {stem} is missing")
    return found


def scan_train(root: str | Path, age_thresholds: Sequence[int] = DEFAULT_AGE_THRESHOLDS
               ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per image, problems, warnings): every layout problem, not just the first.

    Rows: person, stem, file, gender, age, mask, age_group, label (0..17). Warnings are folders in images/ that
    train.csv does not list (not used for training, but usually a renamed or mistyped folder).
    """
    root = find_train_root(root)
    problems: list[str] = []
    people = _people_table(root / "train.csv", problems)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir} not found (the person folders belong there)")
    rows = []
    for rec in people.itertuples(index=False):
        for stem, path in person_images(images_dir / rec.folder, problems).items():
            rows.append((rec.person, stem, str(path), rec.gender, rec.age, MASK_OF_STEM[stem]))
    listed = set(people["folder"])
    warnings = [f"folder {images_dir / d.name} is not listed in {root / 'train.csv'}"
                for d in sorted(images_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")
                and d.name not in listed]
    df = pd.DataFrame(rows, columns=SAMPLE_COLUMNS[:6])
    df["age_group"] = age_group(df["age"].to_numpy(), age_thresholds)
    df["label"] = encode(df["mask"].to_numpy(), df["gender"].to_numpy(), df["age_group"].to_numpy())
    return df.sort_values(["person", "stem"], kind="stable").reset_index(drop=True), problems, warnings


def read_train(root: str | Path, age_thresholds: Sequence[int] = DEFAULT_AGE_THRESHOLDS) -> pd.DataFrame:
    """One row per image (see scan_train); the first layout problem is an error naming its file or folder."""
    samples, problems, _ = scan_train(root, age_thresholds)
    if problems:
        more = f" ({len(problems)} problems in all; facemask check-data lists them)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    return samples


def find_eval_root(root: str | Path) -> Path:
    root = Path(root)
    if (root / "info.csv").is_file():
        return root
    if (root / "eval" / "info.csv").is_file():
        return root / "eval"
    raise DataError(f"{root} holds no info.csv (expected {root}/info.csv or {root}/eval/info.csv)")


def scan_eval(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(info.csv as read, a table with ``file`` per row in info.csv's order, problems)."""
    root = find_eval_root(root)
    info = _read_csv(root / "info.csv", ("ImageID", "ans"))
    images_dir = root / "images"
    problems = []
    files = []
    if info.empty:
        problems.append(f"{root / 'info.csv'} lists no images")
    for row, image_id in enumerate(info["ImageID"], start=2):
        path = images_dir / image_id
        if not inside(image_id):
            problems.append(f"{root / 'info.csv'} line {row}: ImageID {image_id!r} names a file outside "
                            f"{images_dir}; facemask reads only the images inside it")
        elif not path.is_file():
            problems.append(f"{root / 'info.csv'} names image {image_id}, but {path} does not exist")
        files.append(str(path))
    duplicated = info["ImageID"][info["ImageID"].duplicated()]
    if len(duplicated):
        problems.append(f"{root / 'info.csv'} lists image {duplicated.iloc[0]} more than once")
    return info, pd.DataFrame({"image_id": info["ImageID"], "file": files}), problems


def read_eval(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(info.csv as read, a table with ``file`` per row in info.csv's order); a missing image is an error."""
    info, table, problems = scan_eval(root)
    if problems:
        raise DataError(problems[0])
    return info, table
