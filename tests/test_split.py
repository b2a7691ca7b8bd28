import pandas as pd

from facemask.data.layout import read_train
from facemask.data.split import kfold_by_person, split_by_person


def _strata(df):
    return df.groupby("person")[["gender", "age_group"]].first().value_counts()


def test_split_is_by_person_stratified_and_deterministic(demo_root):
    samples = read_train(demo_root / "train")
    train, val = split_by_person(samples, 0.3, seed=7)
    assert set(train.person).isdisjoint(val.person)
    assert len(train) + len(val) == len(samples)
    all_strata, val_strata = _strata(samples), _strata(val)
    for stratum, count in all_strata.items():
        assert abs(val_strata.get(stratum, 0) - count * 0.3) <= 1  # proportions kept within one person
    again_train, again_val = split_by_person(samples, 0.3, seed=7)
    pd.testing.assert_frame_equal(val, again_val)
    _, other_val = split_by_person(samples, 0.3, seed=8)
    assert set(other_val.person) != set(val.person)


def test_kfold_puts_every_person_in_exactly_one_validation_fold(demo_root):
    samples = read_train(demo_root / "train")
    seen = []
    for train, val in kfold_by_person(samples, 3, seed=0):
        assert set(train.person).isdisjoint(val.person)
        assert len(train) + len(val) == len(samples)
        seen.extend(val.person.unique())
    assert sorted(seen) == sorted(samples.person.unique())
