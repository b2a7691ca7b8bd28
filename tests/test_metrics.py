import numpy as np
from sklearn.metrics import f1_score

from facemask.data.labels import decode
from facemask.evaluation.metrics import classification_metrics


def test_macro_f1_equals_sklearn_on_whole_split():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 18, 500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 18, 500))
    metrics = classification_metrics(y_true, y_pred)
    assert metrics["macro_f1"] == f1_score(y_true, y_pred, average="macro")
    assert metrics["accuracy"] == (y_true == y_pred).mean()
    assert metrics["macro_f1"] != metrics["accuracy"]
    for index, name in enumerate(("mask", "gender", "age")):
        assert metrics[f"{name}_f1"] == f1_score(decode(y_true)[index], decode(y_pred)[index], average="macro")


def test_macro_f1_with_absent_classes_matches_sklearn_default():
    y_true = np.array([0, 0, 1, 1, 17, 17, 5])
    y_pred = np.array([0, 1, 1, 1, 17, 3, 5])
    metrics = classification_metrics(y_true, y_pred)
    assert metrics["macro_f1"] == f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert metrics["f1_per_class"]["wear/male/<30"] == f1_score(y_true, y_pred, labels=[0], average=None)[0]
    assert len(metrics["f1_per_class"]) == 18
    assert metrics["support_per_class"]["not wear/female/>=60"] == 2


def test_the_classes_macro_f1_averages_are_named():
    y_true = np.array([0, 0, 1, 1, 17])
    y_pred = np.array([0, 1, 1, 1, 3])
    metrics = classification_metrics(y_true, y_pred)
    from facemask.data.labels import CLASS_NAMES

    assert metrics["averaged_classes"] == [CLASS_NAMES[i] for i in (0, 1, 3, 17)]
    assert metrics["macro_f1"] == f1_score(y_true, y_pred, labels=[0, 1, 3, 17], average="macro")
