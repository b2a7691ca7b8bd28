"""Label corrections applied at load time, and the training-only label settings (age threshold, border ages).

corrections CSV: ``id`` plus any of ``gender`` (male/female), ``age`` (whole number) and
``swap_incorrect_normal`` (1/true: the person's incorrect_mask and normal photos are swapped).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from facemask.data.labels import GENDER_OF_NAME, age_group, encode
from facemask.data.layout import read_train
from facemask.errors import DataError

TRUE_WORDS = {"1", "true", "yes", "y"}


def apply_corrections(samples: pd.DataFrame, path: str | Path, age_thresholds: Sequence[int]
                      ) -> tuple[pd.DataFrame, list[str]]:
    """(corrected samples, one line per change made)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"label corrections {path}: {str(err).splitlines()[0]}") from err
    if "id" not in table.columns:
        raise DataError(f"label corrections {path} has no column 'id' (columns: {', '.join(table.columns)})")
    samples = samples.copy()
    known = set(samples["person"])
    changes = []
    for line, rec in enumerate(table.to_dict("records"), start=2):
        person = rec["id"].strip()
        if person not in known:
            raise DataError(f"label corrections {path} line {line}: person {person!r} is not in the dataset")
        rows = samples["person"] == person
        gender = rec.get("gender", "").strip().lower()
        if gender:
            if gender not in GENDER_OF_NAME:
                raise DataError(f"label corrections {path} line {line}: unknown gender {gender!r}")
            samples.loc[rows, "gender"] = GENDER_OF_NAME[gender]
            changes.append(f"{person}: gender -> {gender}")
        age = rec.get("age", "").strip()
        if age:
            if not age.isdigit():
                raise DataError(f"label corrections {path} line {line}: age {age!r} is not a whole number")
            samples.loc[rows, "age"] = int(age)
            changes.append(f"{person}: age -> {age}")
        if rec.get("swap_incorrect_normal", "").strip().lower() in TRUE_WORDS:
            incorrect = rows & (samples["stem"] == "incorrect_mask")
            normal = rows & (samples["stem"] == "normal")
            samples.loc[incorrect, "mask"], samples.loc[normal, "mask"] = 2, 1
            changes.append(f"{person}: incorrect_mask <-> normal")
    return relabel(samples, age_thresholds), changes


def relabel(samples: pd.DataFrame, age_thresholds: Sequence[int]) -> pd.DataFrame:
    samples = samples.copy()
    samples["age_group"] = age_group(samples["age"].to_numpy(), age_thresholds)
    samples["label"] = encode(samples["mask"].to_numpy(), samples["gender"].to_numpy(), samples["age_group"].to_numpy())
    return samples


def training_labels(train: pd.DataFrame, thresholds: Sequence[int] | None, drop_ages: Sequence[int]
                    ) -> pd.DataFrame:
    """Training rows with the training-only rules: other age thresholds (e.g. 58) and border ages left out.
    Validation and evaluation always keep the true rule."""
    if drop_ages:
        train = train[~train["age"].isin(list(drop_ages))].reset_index(drop=True)
    return relabel(train, thresholds) if thresholds else train


def load_samples(cfg) -> tuple[pd.DataFrame, list[str]]:
    """A config's dataset (``data.root``) with the true age rule and its label corrections applied:
    (samples, one line per change). Training, ``facemask eval`` and ensemble-search all read data this way."""
    samples = read_train(cfg.data.root, cfg.data.age_thresholds)
    if not cfg.data.corrections:
        return samples, []
    return apply_corrections(samples, cfg.data.corrections, cfg.data.age_thresholds)
