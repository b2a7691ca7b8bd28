"""The run layer (facemask.runs): file names, checkpoint I/O with one error style, TrainState, and the light
commands that must not import torch."""
import subprocess
import sys
import time

import pytest
import torch

from facemask.errors import FacemaskError
from facemask.runs import BEST, LAST, Run, TrainState, load_checkpoint, save_checkpoint
from facemask.training.trainer import fit


def test_train_state_round_trips_everything_resume_needs(tiny_config):
    from facemask.config import load_config
    from facemask.models.factory import create_model
    from facemask.training.optim import create_optimizer, create_scheduler

    cfg = load_config("configs/tiny.yaml", ["sched.name=cosine"])

    def parts():
        model = create_model(cfg.model)
        optimizer = create_optimizer(model, cfg.optim)
        return model, optimizer, create_scheduler(optimizer, cfg.sched, 3, 5)
    model, optimizer, scheduler = parts()
    model(torch.randint(0, 255, (4, 3, 64, 48)).float()).sum().backward()
    optimizer.step()
    scheduler.step_update(3)
    state = TrainState(cfg.to_dict(), model, optimizer, scheduler, epoch=2, rows=[{"epoch": 1}, {"epoch": 2}],
                       best_score=0.5, best_epoch=1, best_val={"macro_f1": 0.5}, melted=True,
                       progress={"step": 3})
    torch.manual_seed(123)
    saved = state.state_dict()
    expected_draw = torch.rand(3)
    other_model, other_optimizer, other_scheduler = parts()
    restored = TrainState(cfg.to_dict(), other_model, other_optimizer, other_scheduler)
    restored.load_state_dict(saved)
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where it was saved
    for name in TrainState.FIELDS:
        assert getattr(restored, name) == getattr(state, name), name
    for key, value in model.state_dict().items():
        assert torch.equal(other_model.state_dict()[key], value), key
    assert other_optimizer.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_run_open_accepts_a_folder_or_a_checkpoint_and_names_what_is_missing(tiny_config, tmp_path):
    run = fit(tiny_config())
    assert Run.open(run).path == run and Run.open(run / LAST).checkpoint == LAST
    cfg, model = Run.open(run).load_model("cpu")
    assert cfg.model.name == "test_efficientnet" and not model.training
    with pytest.raises(FacemaskError, match="run folder .* not found"):
        Run.open(tmp_path / "nope")
    with pytest.raises(FacemaskError, match=r"best.pt not found \(is .* a facemask run folder\?\)"):
        Run.open(tmp_path)


class Unsafe:
    """An arbitrary object: torch.load(weights_only=True) refuses it, and facemask never retries without."""


@pytest.mark.parametrize("content,message", [
    (b"", "is empty (0 bytes)"),
    (b"PK\x03\x04 not really a zip", "truncated or corrupt"),
    (None, "not a facemask checkpoint"),
])
def test_checkpoint_errors_are_one_style_and_never_advise_weights_only_false(tmp_path, content, message):
    path = tmp_path / BEST
    if content is None:
        torch.save({"model": {}, "config": {}, "evil": Unsafe()}, path)  # loading it would need full unpickling
    else:
        path.write_bytes(content)
    with pytest.raises(FacemaskError) as err:
        load_checkpoint(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_checkpoints_are_written_whole(tmp_path):
    save_checkpoint({"config": {}, "model": {"w": torch.ones(3)}}, tmp_path / BEST)
    assert torch.equal(load_checkpoint(tmp_path / BEST)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [BEST]  # no temporary file left


def test_score_and_validate_do_not_import_torch(demo_root, tmp_path):
    """The light commands answer in about a second: nothing on their path imports torch."""
    sub = tmp_path / "sub.csv"
    import pandas as pd

    pd.read_csv(demo_root / "eval" / "info.csv", dtype=str).assign(ans=4).to_csv(sub, index=False)
    for argv in (["score", str(sub), str(demo_root / "eval_answers.csv")],
                 ["validate", str(sub), "--info", str(demo_root / "eval" / "info.csv")]):
        script = ("import sys\nfrom facemask.cli import main\ncode = main(%r)\n"
                  "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)") % (argv,)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        print(argv[0], f"{time.perf_counter() - start:.2f} s")
