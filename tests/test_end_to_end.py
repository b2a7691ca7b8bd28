"""demo data -> train -> eval -> predict -> score, through the CLI and the config, on tiny data."""
import json

import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import f1_score

from facemask.cli import main
from facemask.inference.predict import evaluate_run
from facemask.submission import validate_submission
from facemask.training.trainer import fit

TIMING_COLUMNS = ["epoch_seconds", "train_images_per_second"]


@pytest.fixture(scope="module")
def trained_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    code = main(["train", "-c", "configs/tiny.yaml", f"data.root={demo_root / 'train'}",
                 f"train.output_dir={out / 'runs'}", f"data.cache_dir={out / 'cache'}", "train.epochs=2",
                 "data.val_fraction=0.34", "train.name=e2e"])
    assert code == 0
    (run,) = list((out / "runs").iterdir())
    return run


def test_run_folder_has_everything(trained_run):
    assert trained_run.name.startswith("e2e-")
    for name in ("config.yaml", "split.csv", "metrics.csv", "best.pt", "last.pt", "eval.json"):
        assert (trained_run / name).is_file(), name
    metrics = pd.read_csv(trained_run / "metrics.csv")
    assert metrics.epoch.tolist() == [1, 2]
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["model"]["name"] == "test_efficientnet" and config["train"]["epochs"] == 2
    split = pd.read_csv(trained_run / "split.csv", dtype=str)
    assert not set(split[split.side == "train"].person) & set(split[split.side == "val"].person)
    best = torch.load(trained_run / "best.pt", weights_only=True)
    summary = json.loads((trained_run / "eval.json").read_text())
    assert summary["epoch"] == best["epoch"]
    assert summary["macro_f1"] == pytest.approx(metrics.val_macro_f1.max())


def test_eval_recomputes_the_validation_figures_and_equals_sklearn(trained_run, capsys):
    summary = json.loads((trained_run / "eval.json").read_text())
    assert main(["eval", str(trained_run), "-q", "--out", str(trained_run / "eval-again.json")]) == 0
    again = json.loads((trained_run / "eval-again.json").read_text())
    for key in ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1", "count"):
        assert again[key] == pytest.approx(summary[key]), key
    predictions = pd.read_csv(trained_run / "val_predictions.csv")
    assert again["macro_f1"] == pytest.approx(f1_score(predictions.label, predictions.pred, average="macro"))
    assert "macro F1" in capsys.readouterr().out


def test_eval_on_another_dataset(trained_run, demo_root):
    metrics = evaluate_run(trained_run, str(demo_root / "train"), progress=False)
    assert metrics["count"] == 7 * len(pd.read_csv(demo_root / "train" / "train.csv"))


def test_predict_writes_a_valid_submission_and_score_reads_it(trained_run, demo_root, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    assert main(["predict", str(trained_run), "--data", str(demo_root / "eval"), "--out", str(out), "-q"]) == 0
    submission = pd.read_csv(out, dtype={"ImageID": str})
    info = pd.read_csv(demo_root / "eval" / "info.csv", dtype={"ImageID": str})
    assert submission.ImageID.tolist() == info.ImageID.tolist()
    assert submission.ans.between(0, 17).all() and submission.ans.dtype.kind == "i"
    assert validate_submission(submission, info) == []
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind
    capsys.readouterr()
    assert main(["score", str(out), str(demo_root / "eval_answers.csv")]) == 0
    answers = pd.read_csv(demo_root / "eval_answers.csv", dtype={"ImageID": str})
    expected = f1_score(answers.ans, submission.ans, average="macro")
    assert f"macro F1 {expected:.4f}" in capsys.readouterr().out


def test_same_seed_same_numbers(tiny_config):
    cfg = tiny_config("train.epochs=2")
    first, second = fit(cfg), fit(cfg)
    a = pd.read_csv(first / "metrics.csv").drop(columns=TIMING_COLUMNS)
    b = pd.read_csv(second / "metrics.csv").drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    wa = torch.load(first / "last.pt", weights_only=True)["model"]
    wb = torch.load(second / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    other = fit(tiny_config("train.epochs=2", "train.seed=3"))
    wc = torch.load(other / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_selection_metric_is_a_setting(tiny_config):
    run = fit(tiny_config("train.epochs=2", "train.select_metric=val_loss", "train.select_mode=min"))
    metrics = pd.read_csv(run / "metrics.csv")
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == int(metrics.loc[metrics.val_loss.idxmin(), "epoch"])


@pytest.mark.parametrize("args,message", [
    (["train", "model.name=nosuchnet"], "model.name='nosuchnet'"),
    (["train", "optim.name=adamz"], "optim.name='adamz'"),
    (["train", "loss.name=hinge"], "loss.name='hinge'"),
    (["train", "data.augment=wild"], "data.augment='wild'"),
    (["train", "train.select_metric=speed"], "train.select_metric='speed'"),
    (["train", "train.epochs=x"], "train.epochs"),
    (["eval", "/nonexistent/run"], "/nonexistent/run"),
])
def test_cli_errors_are_one_line(demo_root, tmp_path, capsys, args, message):
    overrides = [f"data.root={demo_root / 'train'}", f"train.output_dir={tmp_path}", "model.pretrained=none",
                 "train.epochs=1"] if args[0] == "train" else []
    code = main(args[:1] + (["-c", "configs/tiny.yaml"] if args[0] == "train" else []) + overrides + args[1:])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
