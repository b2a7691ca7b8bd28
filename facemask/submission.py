"""Submissions (``ImageID,ans``): read, check against info.csv, write, and score against an answers file.

No torch here: ``facemask validate`` and ``facemask score`` start in about a second. A label is a class id written
as a plain integer 0..17 (``3``, not ``3.0``, ``1e1`` or `` 3``), as the competition reads them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from facemask.data.labels import NUM_CLASSES
from facemask.errors import DataError, FacemaskError
from facemask.io import atomic_write_text, first_line

LABEL = re.compile(r"0*(?:1[0-7]|[0-9])")  # a class 0..17 (no int(): a 5,000-digit value must not raise)
COLUMNS = ("ImageID", "ans")


def read_csv_file(path: str | Path, what: str = "file", columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    """A CSV read as text (every value a string), with ``columns`` required; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a CSV file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as err:
        raise DataError(f"{what} {path} not found") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DataError(f"cannot read {what} {path}: {first_line(err)}") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} {path} has no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    return frame


def label_problem(values: pd.Series, name: str) -> str | None:
    """The first value of ``values`` that is not a plain integer 0..17, as a message; None when all are."""
    for row, value in enumerate(values.astype(str), start=1):
        if not LABEL.fullmatch(value):
            shown = value if len(value) <= 20 else value[:20] + "..."
            return f"{name}: ans {shown!r} (row {row}) is not a class 0..{NUM_CLASSES - 1}"
    return None


def validate_submission(submission: pd.DataFrame, info: pd.DataFrame, name: str = "submission",
                        check_order: bool = True) -> list[str]:
    """Every problem with a submission against info.csv, one message each (empty list = valid)."""
    problems = []
    for column in COLUMNS:
        if column not in submission.columns:
            return [f"{name}: no column {column!r} (columns: {', '.join(map(str, submission.columns))})"]
    if len(submission) != len(info):
        problems.append(f"{name}: {len(submission)} rows, info.csv has {len(info)}")
    ids, expected = submission["ImageID"].astype(str).tolist(), info["ImageID"].astype(str).tolist()
    missing = sorted(set(expected) - set(ids))
    extra = sorted(set(ids) - set(expected))
    if missing:
        problems.append(f"{name}: {len(missing)} ImageIDs of info.csv are missing, e.g. {missing[0]}")
    if extra:
        problems.append(f"{name}: {len(extra)} ImageIDs are not in info.csv, e.g. {extra[0]}")
    duplicated = submission["ImageID"][submission["ImageID"].duplicated()]
    if len(duplicated):
        problems.append(f"{name}: ImageID {duplicated.iloc[0]} appears more than once")
    if check_order and not missing and not extra and len(ids) == len(expected) and ids != expected:
        first = next(i for i, (a, b) in enumerate(zip(ids, expected)) if a != b)
        problems.append(f"{name}: rows are not in info.csv's order (row {first + 1}: {ids[first]}, expected "
                        f"{expected[first]})")
    bad_label = label_problem(submission["ans"], name)
    if bad_label:
        problems.append(bad_label)
    return problems


def write_submission(info: pd.DataFrame, labels: np.ndarray, path: str | Path) -> pd.DataFrame:
    """info.csv's rows in order with ``ans`` filled; validated, then written atomically."""
    submission = info.copy()
    submission["ans"] = np.asarray(labels, dtype=np.int64)
    problems = validate_submission(submission.astype({"ans": str}), info)
    if problems:
        raise FacemaskError(problems[0])
    atomic_write_text(Path(path), submission.to_csv(index=False))
    return submission


def read_answers(answers_path: str | Path) -> pd.DataFrame:
    """An answers file (ImageID,ans) read and checked: rows, labels 0..17, each ImageID once; a DataError names the
    file and the first problem."""
    answers = read_csv_file(answers_path, "answers file")
    if answers.empty:
        raise DataError(f"answers file {answers_path} has no rows")
    bad_answer = label_problem(answers["ans"], f"answers file {answers_path}")
    if bad_answer:
        raise DataError(bad_answer)
    duplicated = answers["ImageID"][answers["ImageID"].duplicated()]
    if len(duplicated):
        raise DataError(f"answers file {answers_path}: ImageID {duplicated.iloc[0]} appears more than once")
    return answers


def score_submission(submission_path: str | Path, answers_path: str | Path) -> dict:
    """Metrics of a submission against an answers file (both ImageID,ans), matched by ImageID."""
    from facemask.evaluation.metrics import classification_metrics

    submission = read_csv_file(submission_path, "submission")
    answers = read_answers(answers_path)
    problems = validate_submission(submission, answers, str(submission_path), check_order=False)
    if problems:
        raise DataError(problems[0])
    merged = answers.merge(submission, on="ImageID", suffixes=("_true", "_pred"))
    return classification_metrics(merged["ans_true"].astype(int).to_numpy(), merged["ans_pred"].astype(int).to_numpy())


def save_json(data: dict, path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2))
