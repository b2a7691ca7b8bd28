"""The 18 classes: ``mask * 6 + gender * 3 + age_group`` and back."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_CLASSES = 18
MASK_NAMES = ("wear", "incorrect", "not wear")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", ">=60")
ATTRIBUTES = {"mask": MASK_NAMES, "gender": GENDER_NAMES, "age": AGE_NAMES}
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


def encode(mask: int | np.ndarray, gender: int | np.ndarray, age: int | np.ndarray) -> int | np.ndarray:
    """(mask, gender, age group) -> class id 0..17."""
    return mask * 6 + gender * 3 + age


def decode(label: int | np.ndarray) -> tuple:
    """class id 0..17 -> (mask, gender, age group)."""
    return label // 6, (label // 3) % 2, label % 3


def class_name(label: int) -> str:
    mask, gender, age = decode(int(label))
    return f"{MASK_NAMES[mask]}/{GENDER_NAMES[gender]}/{AGE_NAMES[age]}"


CLASS_NAMES = tuple(class_name(i) for i in range(NUM_CLASSES))
