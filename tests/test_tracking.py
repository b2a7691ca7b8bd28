"""Report and experiment tracking: a 1-epoch tiny run produces report.html + PNGs and an MLflow run; `facemask
runs` lists runs in F1 order and `--diff` shows exactly the changed keys."""
import glob
import json

import mlflow
import pytest

from facemask.cli import main
from facemask.tracking import diff_runs, list_runs
from facemask.training.trainer import fit


@pytest.fixture(scope="module")
def tracked(demo_root, tmp_path_factory):
    from facemask.config import load_config

    out = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    common = [f"data.root={demo_root / 'train'}", f"train.output_dir={out / 'runs'}", f"data.cache_dir={out / 'c'}",
              "data.val_fraction=0.34", "track.mlflow=true", f"track.uri={uri}", "train.report=true"]
    first = fit(load_config("configs/tiny.yaml", common + ["train.name=first", "track.tensorboard=true"]))
    second = fit(load_config("configs/tiny.yaml", common + ["train.name=second", "optim.lr=0.01", "data.height=48",
                                                             "track.tensorboard=true"]))
    return uri, first, second


def test_training_writes_the_report(tracked):
    _, run, _ = tracked
    html = (run / "report.html").read_text()
    for png in ("curves", "f1_attributes", "f1_per_class", "confusion_attributes", "confusion"):
        assert (run / "report" / f"{png}.png").stat().st_size > 5000
    assert html.count("data:image/png;base64,") >= 5 and 'src="report/' not in html  # self-contained
    assert "val macro F1" in html
    errors = sorted(p.name for p in (run / "report").glob("errors_*.png"))
    assert errors  # an untrained model gets plenty wrong


def test_mlflow_run_has_params_metrics_and_artifacts(tracked):
    uri, run, _ = tracked
    mlflow.set_tracking_uri(uri)
    run_id = json.loads((run / "tracking.json").read_text())["run_id"]
    data = mlflow.MlflowClient().get_run(run_id)
    assert data.info.status == "FINISHED"
    assert data.data.params["model.name"] == "test_efficientnet" and data.data.params["optim.lr"] == "0.005"
    assert len(data.data.params) >= 40  # the whole resolved config
    eval_json = json.loads((run / "eval.json").read_text())
    assert data.data.metrics["best_val_macro_f1"] == pytest.approx(eval_json["macro_f1"])
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_macro_f1")
    assert [m.step for m in history] == [1]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"report.html", "config.yaml", "metrics.csv", "eval.json", "report"} <= artifacts


def test_tensorboard_event_files(tracked):
    _, run, _ = tracked
    assert glob.glob(str(run / "tensorboard" / "events.out.tfevents.*"))


def test_runs_table_is_sorted_by_f1_and_diff_shows_exactly_the_changed_keys(tracked, capsys):
    uri, first, second = tracked
    table = list_runs(uri)
    assert set(table.run) == {first.name, second.name}
    assert table.macro_f1.is_monotonic_decreasing
    assert main(["runs", "--uri", uri]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if first.name in line or second.name in line]
    order = [table.run.iloc[0], table.run.iloc[1]]
    assert [next(n for n in order if n in line) for line in lines] == order
    changed = diff_runs(first.name, second.name, uri)
    assert [key for key, _, _ in changed] == ["data.height", "optim.lr", "train.name"]
    assert ("optim.lr", "0.005", "0.01") in changed
    assert main(["runs", "--uri", uri, "--diff", first.name, second.name]) == 0
    assert "optim.lr: 0.005 -> 0.01" in capsys.readouterr().out


def test_report_command_on_a_run(tracked, capsys):
    _, _, second = tracked
    (second / "report.html").unlink()
    assert main(["report", str(second)]) == 0
    assert (second / "report.html").is_file()


def test_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.csv not found" in capsys.readouterr().err


def test_interrupted_run_resumes_the_same_mlflow_run(demo_root, tmp_path):
    import os
    import signal

    from facemask.config import load_config
    from facemask.errors import TrainingInterrupted

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("configs/tiny.yaml", [f"data.root={demo_root / 'train'}", f"train.output_dir={tmp_path}",
                                            f"data.cache_dir={tmp_path / 'c'}", "data.val_fraction=0.34",
                                            "track.mlflow=true", f"track.uri={uri}", "train.epochs=2"])

    def interrupt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, on_step=interrupt)
    run = info.value.run_dir
    mlflow.set_tracking_uri(uri)
    run_id = json.loads((run / "tracking.json").read_text())["run_id"]
    assert mlflow.MlflowClient().get_run(run_id).info.status == "KILLED"
    fit(resume=run)
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FINISHED"
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_macro_f1")
    assert sorted(m.step for m in history) == [1, 2]
    assert len(list_runs(uri)) == 1


def test_report_renders_in_headless_chromium_with_every_image_loaded(tracked, tmp_path, chromium):
    import subprocess

    _, run, _ = tracked
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    url = (run / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    result = subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'a'}", "--window-size=1366,3000",
                             f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 50_000, f"Chromium could not start: {result.stderr[-500:]}"
    dom = subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'b'}", "--virtual-time-budget=5000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    html = (run / "report.html").read_text()
    total = html.count("<img ")
    assert total >= 5
    assert f'data-images-loaded="{total}/{total}"' in dom.stdout, dom.stderr[-500:]
