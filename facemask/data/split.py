"""Person-level splits, stratified by gender x age group: no person is ever on both sides."""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from facemask.errors import DataError


def _people(samples: pd.DataFrame) -> pd.DataFrame:
    people = samples.groupby("person", sort=True)[["gender", "age_group"]].first().reset_index()
    people["stratum"] = people["gender"] * 3 + people["age_group"]
    return people


def split_by_person(samples: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) sample tables. Each gender x age stratum sends round(n * val_fraction) people to val.

    Written per stratum rather than with sklearn's train_test_split because that one rejects strata of a single
    person (common in small or real data) and rounds globally, not within each stratum.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    people = _people(samples)
    rng = np.random.default_rng(seed)
    val_people: list[str] = []
    for _, group in people.groupby("stratum", sort=True):
        ids = group["person"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        val_people.extend(ids[: int(round(len(ids) * val_fraction))])
    is_val = samples["person"].isin(set(val_people))
    return samples[~is_val].reset_index(drop=True), samples[is_val].reset_index(drop=True)


def kfold_by_person(samples: pd.DataFrame, folds: int, seed: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield (train, val) for each of ``folds`` person-level stratified folds (sklearn's StratifiedKFold)."""
    people = _people(samples)
    if folds > len(people):
        raise DataError(f"data.folds={folds} but the data has {len(people)} people: at most {len(people)} folds "
                        "(a fold holds whole people)")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    with warnings.catch_warnings():  # strata smaller than the fold count are fine: they just skip some folds
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(people["person"], people["stratum"]))
    for _, val_idx in splits:
        is_val = samples["person"].isin(set(people["person"].iloc[val_idx]))
        yield samples[~is_val].reset_index(drop=True), samples[is_val].reset_index(drop=True)
