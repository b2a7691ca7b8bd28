"""The 18 classes: ``mask * 6 + gender * 3 + age_group`` and back. The only place that knows this layout: losses,
heads, metrics, ensembles, reports and the prediction API ask this module.

Works on ints, numpy arrays and torch tensors alike (the arithmetic is the same), and has no torch import.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_CLASSES = 18
MASK_NAMES = ("wear", "incorrect", "not wear")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", ">=60")
ATTRIBUTES = {"mask": MASK_NAMES, "gender": GENDER_NAMES, "age": AGE_NAMES}
SHAPE = tuple(len(names) for names in ATTRIBUTES.values())  # (3, 2, 3): class = index into this grid, row-major
DEFAULT_AGE_THRESHOLDS = (30, 60)

# File stem in a person folder -> mask state.
IMAGE_STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASK_OF_STEM = {**{f"mask{i}": 0 for i in range(1, 6)}, "incorrect_mask": 1, "normal": 2}
GENDER_OF_NAME = {"male": 0, "female": 1}


def age_group(age: int | np.ndarray, thresholds: Sequence[int] = DEFAULT_AGE_THRESHOLDS) -> int | np.ndarray:
    """0 for age < thresholds[0], 1 below thresholds[1], else 2 (works on scalars and arrays)."""
    low, high = thresholds
    groups = np.digitize(np.asarray(age), [low, high])
    return int(groups) if np.ndim(groups) == 0 else groups


def encode(mask, gender, age):
    """(mask, gender, age group) -> class id 0..17."""
    return mask * (SHAPE[1] * SHAPE[2]) + gender * SHAPE[2] + age


def decode(label) -> tuple:
    """class id 0..17 -> (mask, gender, age group)."""
    return label // (SHAPE[1] * SHAPE[2]), (label // SHAPE[2]) % SHAPE[1], label % SHAPE[2]


def attribute_of(label, attribute: str):
    """The ``attribute`` part ("mask", "gender" or "age") of class ids."""
    return decode(label)[list(ATTRIBUTES).index(attribute)]


def marginals(probs) -> dict:
    """Per-attribute probabilities from (N, 18) class probabilities (numpy or torch): {"mask": (N, 3), ...}."""
    grid = probs.reshape(-1, *SHAPE)
    return {"mask": grid.sum(2).sum(2), "gender": grid.sum(1).sum(2), "age": grid.sum(1).sum(1)}


def class_name(label: int) -> str:
    mask, gender, age = decode(int(label))
    return f"{MASK_NAMES[mask]}/{GENDER_NAMES[gender]}/{AGE_NAMES[age]}"


CLASS_NAMES = tuple(class_name(i) for i in range(NUM_CLASSES))
