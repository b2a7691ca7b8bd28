"""Interruption and resume, atomic saves, non-finite losses."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from facemask.cli import main
from facemask.errors import FacemaskError, TrainingInterrupted
from facemask.training.trainer import fit

TIMING = ["epoch_seconds", "train_images_per_second"]


def _weights(run, name="last.pt"):
    return torch.load(run / name, weights_only=True)["model"]


def _same_run(a, b):
    ma = pd.read_csv(a / "metrics.csv").drop(columns=TIMING)
    mb = pd.read_csv(b / "metrics.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    for name in ("last.pt", "best.pt"):
        wa, wb = _weights(a, name), _weights(b, name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    ea, eb = (torch.load(run / "last.pt", weights_only=True)["ema"] for run in (a, b))
    assert (ea is None) == (eb is None) and (ea is None or all(torch.equal(ea[k], eb[k]) for k in ea))


TOOLBOX = ("aug.mixup_alpha=0.4", "aug.halfmix_p=0.5", "train.ema_decay=0.9", "data.sampler=weighted",
           "sched.name=plateau", "sched.warmup_epochs=0.5", "data.augment=flip,colour,noise,erasing")


@pytest.mark.parametrize("stop_at,options", [(3, ()), ("epoch_end", ()), (4, TOOLBOX)])
def test_interrupted_then_resumed_equals_uninterrupted(tiny_config, stop_at, options):
    cfg = tiny_config("train.epochs=2", "data.batch_size=12", "data.augment=flip", *options)
    straight = fit(cfg)
    split = pd.read_csv(straight / "split.csv")
    steps_per_epoch = 7 * int((split.side == "train").sum()) // 12  # 7 photos a person, whole batches of 12
    stop = steps_per_epoch if stop_at == "epoch_end" else stop_at
    assert stop < steps_per_epoch or stop_at == "epoch_end"

    def interrupt(step):
        if step == stop:
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, delivered at a chosen step

    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, on_step=interrupt)
    run = info.value.run_dir
    assert "--resume" in str(info.value)
    saved = torch.load(run / "last.pt", weights_only=True)
    if stop_at == "epoch_end":  # the epoch finished, was validated and saved whole: nothing partial to resume
        assert saved["progress"] is None and saved["epoch"] == 1 and len(saved["rows"]) == 1
    else:
        assert saved["progress"]["step"] == stop and saved["epoch"] == 0
    resumed = fit(resume=run)
    assert resumed == run
    _same_run(straight, resumed)


def test_resume_needs_no_pretrained_weights(tiny_config, tmp_path):
    """last.pt has the weights: a run resumes after its model.pretrained file is gone (another machine, offline)."""
    weights = tmp_path / "pretrained.pt"
    weights.write_bytes((fit(tiny_config()) / "best.pt").read_bytes())  # a facemask checkpoint as the weights
    cfg = tiny_config("train.epochs=2", f"model.pretrained={weights}")

    def interrupt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, on_step=interrupt)
    weights.unlink()
    run = fit(resume=info.value.run_dir)
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_resume_a_finished_run_is_an_error(tiny_config):
    run = fit(tiny_config())
    with pytest.raises(FacemaskError, match="already finished"):
        fit(resume=run)


def test_sigterm_from_outside_saves_and_cli_resumes(tiny_config, tmp_path):
    cfg = tiny_config()
    args = ["-c", "configs/tiny.yaml", f"data.root={cfg.data.root}", f"train.output_dir={tmp_path / 'runs'}",
            f"data.cache_dir={cfg.data.cache_dir}", "data.val_fraction=0.34", "train.epochs=3",
            "data.batch_size=4"]
    proc = subprocess.Popen([sys.executable, "-m", "facemask", "train", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/split.csv")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "Traceback" not in err
    (run,) = list((tmp_path / "runs").iterdir())
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] < 3
    assert main(["train", "--resume", str(run)]) == 0  # finishes the remaining epochs
    assert pd.read_csv(run / "metrics.csv").epoch.tolist() == [1, 2, 3]


def test_killed_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import torch
        from facemask.runs import save_checkpoint
        save_checkpoint({{"step": 0, "w": torch.zeros(3)}}, {str(target)!r})
        print("ready", flush=True)
        step = 1
        while True:
            save_checkpoint({{"step": step, "w": torch.randn(20_000_000)}}, {str(target)!r})
            step += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    state = torch.load(target, weights_only=True)  # whole, never half-written
    assert "step" in state and "w" in state


def test_non_finite_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tiny_config):
    with pytest.raises(FacemaskError, match=r"loss is (nan|inf|-inf) at epoch \d+ step \d+"):
        fit(tiny_config("train.epochs=3", "optim.lr=1e30", "optim.name=sgd", "sched.name=none"))


def test_checkpoint_from_another_model_is_a_clear_error(tiny_config, tmp_path, capsys):
    run = fit(tiny_config())
    code = main(["train", "-c", "configs/tiny.yaml", f"data.root={tiny_config().data.root}",
                 f"train.output_dir={tmp_path / 'o'}", "model.name=resnet18", f"model.pretrained={run / 'best.pt'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "best.pt does not fit model" in err and len(err.strip().splitlines()) == 1


def test_unwritable_output_folder(tiny_config, tmp_path, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    code = main(["train", "-c", "configs/tiny.yaml", f"data.root={tiny_config().data.root}",
                 f"train.output_dir={blocker}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot create run folder" in err and str(blocker) in err
