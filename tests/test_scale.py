"""torchrun/DDP on CPU (gloo) and Optuna sweeps."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from facemask.cli import main
from facemask.config import load_config
from facemask.inference.predict import evaluate_run
from facemask.training.trainer import fit


def test_two_process_gloo_run_matches_single_process_evaluation(demo_root, tmp_path):
    """2 gloo processes, with an EMA chosen as best.pt: the validation figures logged during training (model and
    EMA) equal a single-process `facemask eval` of the saved checkpoints on the same people."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_port=29517", "-m", "facemask", "train",
         "-c", "configs/tiny.yaml", f"data.root={demo_root / 'train'}", f"train.output_dir={tmp_path / 'runs'}",
         f"data.cache_dir={tmp_path / 'cache'}", "data.val_fraction=0.34", "train.epochs=3",
         "train.ema_decay=0.5", "train.select_metric=ema_val_macro_f1"],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = list((tmp_path / "runs").iterdir())  # one run folder, written by rank 0 only
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.epoch.tolist() == [1, 2, 3]
    assert metrics.val_macro_f1.max() > 0.1 and metrics.ema_val_macro_f1.max() > 0.1  # a model that learned
    during = json.loads((run / "eval.json").read_text())  # the EMA's figures at the best epoch
    after = evaluate_run(run, progress=False)  # one process, the saved best.pt (the EMA), the same people
    for key in ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1", "count"):
        assert after[key] == pytest.approx(during[key], abs=1e-9), key
    assert after["loss"] == pytest.approx(during["loss"], rel=1e-5)
    best_row = metrics.loc[metrics.epoch == during["epoch"]].iloc[0]
    assert after["loss"] == pytest.approx(best_row.ema_val_loss, rel=1e-5)
    last = evaluate_run(run, checkpoint="last.pt", progress=False)  # the raw model after the last epoch
    for key in ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1"):
        assert last[key] == pytest.approx(metrics[f"val_{key}"].iloc[-1], abs=1e-9), key
    assert last["loss"] == pytest.approx(metrics.val_loss.iloc[-1], rel=1e-5)
    assert during["count"] == len(pd.read_csv(run / "val_predictions.csv"))  # no padded duplicates


SPACE = {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "loss.name": {"type": "categorical", "choices": ["ce", "focal"]}}


def test_sweep_runs_resumes_and_its_best_config_trains(demo_root, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    args = ["sweep", "-c", "configs/tiny.yaml", f"data.root={demo_root / 'train'}",
            f"train.output_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}", "data.val_fraction=0.34",
            "train.epochs=2", "--space", str(space), "--study", "t", "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--out", str(tmp_path / "best.yaml")]
    assert main([*args, "--trials", "3"]) == 0
    assert "3 trials" in capsys.readouterr().out
    assert len(list((tmp_path / "runs").iterdir())) == 3  # each trial a normal run
    assert main([*args, "--trials", "1"]) == 0
    assert "4 trials" in capsys.readouterr().out  # the re-run continued the same study
    best = load_config(tmp_path / "best.yaml")
    assert 1e-4 <= best.optim.lr <= 1e-2 and best.loss.name in ("ce", "focal")
    run = fit(load_config(tmp_path / "best.yaml", ["train.epochs=1"]))
    assert (run / "best.pt").is_file()


def test_two_workers_share_a_journal_study(demo_root, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    journal = tmp_path / "study.journal"
    args = [sys.executable, "-m", "facemask", "sweep", "-c", "configs/tiny.yaml", f"data.root={demo_root / 'train'}",
            f"train.output_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.val_fraction=0.34", "--space", str(space), "--study", "shared", "--trials", "1",
            "--storage", f"journal:{journal}", "--out", str(tmp_path / "best.yaml")]
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(study.trials) == 2


def test_sweep_rejects_a_bad_space_before_training(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"optim.lrr": {"type": "float", "low": 0.1, "high": 0.2}}))
    assert main(["sweep", "-c", "configs/tiny.yaml", "--space", str(space), "--trials", "1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    space.write_text(yaml.safe_dump({"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}))
    assert main(["sweep", "-c", "configs/tiny.yaml", "--space", str(space), "--trials", "1"]) == 2
    assert "needs type" in capsys.readouterr().err


def test_augmentation_on_the_device_equals_augmentation_in_the_loader(tiny_config):
    """data.augment_on=device (the GPU path: uint8 batch moved first, then augmented per sample with its seed)
    trains bit for bit like augmenting in the loader; checked here on the CPU device."""
    import torch

    from facemask.errors import ConfigError

    augment = "data.augment=flip,framing,colour,temperature,jpeg,noise,erasing"
    runs = [fit(tiny_config(augment, f"data.augment_on={where}", "train.epochs=2", f"train.name={where}"))
            for where in ("loader", "device")]
    weights = [torch.load(run / "last.pt", weights_only=True)["model"] for run in runs]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    metrics = [pd.read_csv(run / "metrics.csv").filter(regex="^(?!.*(seconds|per_second))") for run in runs]
    assert "val_macro_f1" in metrics[0]
    pd.testing.assert_frame_equal(*metrics)
    with pytest.raises(ConfigError, match="data.augment_on='gpu'"):
        fit(tiny_config("data.augment_on=gpu"))
