import numpy as np
import pytest

from facemask.data.labels import CLASS_NAMES, NUM_CLASSES, age_group, decode, encode


def test_every_class_round_trips():
    for label in range(NUM_CLASSES):
        assert encode(*decode(label)) == label
    masks, genders, ages = np.meshgrid(range(3), range(2), range(3), indexing="ij")
    labels = encode(masks.ravel(), genders.ravel(), ages.ravel())
    assert sorted(labels.tolist()) == list(range(NUM_CLASSES))
    back = decode(labels)
    assert (back[0] == masks.ravel()).all() and (back[1] == genders.ravel()).all() and (back[2] == ages.ravel()).all()


def test_competition_examples():
    assert encode(0, 0, 0) == 0 and encode(2, 1, 2) == 17 and encode(1, 1, 0) == 9
    assert CLASS_NAMES[9] == "incorrect/female/<30"


@pytest.mark.parametrize("age,expected", [(18, 0), (29, 0), (30, 1), (59, 1), (60, 2), (90, 2)])
def test_default_age_groups(age, expected):
    assert age_group(age) == expected


def test_age_thresholds_are_settings():
    assert age_group(58, (30, 58)) == 2 and age_group(57, (30, 58)) == 1
    assert age_group(np.array([20, 40, 70]), (25, 65)).tolist() == [0, 1, 2]


def test_the_file_name_to_mask_table_is_the_competitions():
    """Pinned: the demo generator reads the same table, so only this test notices a swap of incorrect/normal."""
    from facemask.data.labels import IMAGE_STEMS, MASK_NAMES, MASK_OF_STEM

    assert MASK_OF_STEM == {"mask1": 0, "mask2": 0, "mask3": 0, "mask4": 0, "mask5": 0, "incorrect_mask": 1,
                            "normal": 2}
    assert MASK_NAMES == ("wear", "incorrect", "not wear") and len(IMAGE_STEMS) == 7
