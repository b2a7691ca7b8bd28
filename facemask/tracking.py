"""Experiment tracking: MLflow (a local SQLite store by default, or a team's server via its URI) and optional
TensorBoard, plus the `facemask runs` table and `--diff`, read back from the tracking store."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from facemask.config import TrackConfig
from facemask.errors import FacemaskError
from facemask.io import atomic_write_text
from facemask.runs import BEST, CONFIG, EVAL, METRICS, REPORT, REPORT_DIR, SPLIT, TENSORBOARD, TRACKING

log = logging.getLogger("facemask")
TRACKING_FILE = TRACKING  # in the run folder: the MLflow run id, so a resumed run continues it


def tracking_uri(cfg: TrackConfig) -> str:
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": "0.001"}"""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, type(None), bool)) else str(value)
    return flat


def _mlflow(uri: str, experiment: str | None = None):
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    if experiment is not None and mlflow.get_experiment_by_name(experiment) is None:
        artifacts = None
        if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the working folder
            artifacts = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    return mlflow


class Tracker:
    """Mirrors one training run to MLflow (and TensorBoard). Only the process that writes files uses one."""

    def __init__(self, cfg: TrackConfig, run_dir: Path, config: dict[str, Any], resume: bool = False):
        self.cfg, self.run_dir = cfg, run_dir
        self.run = None
        self.writer = None
        if cfg.mlflow:
            try:
                mlflow = _mlflow(tracking_uri(cfg), cfg.experiment)
                previous = run_dir / TRACKING_FILE
                run_id = json.loads(previous.read_text())["run_id"] if resume and previous.is_file() else None
                if run_id is None:
                    experiment = mlflow.get_experiment_by_name(cfg.experiment)
                    self.run = mlflow.MlflowClient().create_run(experiment.experiment_id, run_name=run_dir.name,
                                                                tags={"run_dir": str(run_dir.resolve())})
                    self.client = mlflow.MlflowClient()
                    params = flatten(config)
                    from mlflow.entities import Param

                    items = [Param(k, v[:6000]) for k, v in params.items()]
                    for i in range(0, len(items), 90):
                        self.client.log_batch(self.run.info.run_id, params=items[i:i + 90])
                    atomic_write_text(run_dir / TRACKING_FILE, json.dumps({"uri": tracking_uri(cfg),
                                                                           "run_id": self.run.info.run_id}))
                else:
                    self.client = mlflow.MlflowClient()
                    self.run = self.client.get_run(run_id)
                    self.client.update_run(run_id, status="RUNNING")
            except Exception as err:  # noqa: BLE001 - a tracking failure must not cost the run; say why
                raise FacemaskError(f"MLflow tracking at {tracking_uri(cfg)} failed: {str(err).splitlines()[0]} "
                                    "(set track.mlflow=false to train without it)") from err
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD))

    @classmethod
    def disabled(cls) -> "Tracker":
        """A tracker that records nothing (ranks other than 0 of a distributed run)."""
        return cls(TrackConfig(mlflow=False, tensorboard=False), Path("."), {})

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None

    def log_epoch(self, row: dict[str, float]) -> None:
        step = int(row["epoch"])
        values = {k: float(v) for k, v in row.items() if k != "epoch"}
        if self.run is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        if self.writer is not None:
            for key, value in values.items():
                split, _, name = key.partition("_")
                self.writer.add_scalar(f"{name}/{split}" if split in ("train", "val") else key, value, step)
            self.writer.flush()

    def finish(self, summary: dict[str, Any], status: str = "FINISHED") -> None:
        if self.run is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            best = {f"best_val_{k}": float(summary[k]) for k in ("macro_f1", "accuracy", "mask_f1", "gender_f1",
                                                                  "age_f1") if k in summary}
            best["best_epoch"] = float(summary.get("epoch", 0))
            best["train_seconds"] = float(summary.get("train_seconds", 0))
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in best.items()])
            for name in (CONFIG, METRICS, EVAL, REPORT, SPLIT):
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
            if (self.run_dir / REPORT_DIR).is_dir():
                self.client.log_artifacts(self.run_id, str(self.run_dir / REPORT_DIR), REPORT_DIR)
            if self.cfg.log_checkpoint and (self.run_dir / BEST).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / BEST))
            self.client.set_terminated(self.run_id, status)
        if self.writer is not None:
            self.writer.close()

    def stop(self, status: str) -> None:
        """An interrupted or failed run: mark it so in MLflow (a resume sets it RUNNING again)."""
        if self.run is not None:
            self.client.set_terminated(self.run_id, status)
        if self.writer is not None:
            self.writer.close()


RUN_COLUMNS = {
    "tags.mlflow.runName": "run", "params.model.name": "model", "params.data.height": "h",
    "params.data.width": "w", "params.optim.name": "optim", "params.optim.lr": "lr", "params.loss.name": "loss",
    "params.data.augment": "augment", "metrics.best_val_macro_f1": "macro_f1",
    "metrics.best_val_accuracy": "accuracy", "metrics.best_val_mask_f1": "mask_f1",
    "metrics.best_val_gender_f1": "gender_f1", "metrics.best_val_age_f1": "age_f1", "params.train.epochs": "epochs",
    "metrics.train_seconds": "seconds", "status": "status",
}


def missing_store(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` URI when it does not exist (nothing tracked there yet), else None."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        return None if path.is_file() else path
    return None


def list_runs(uri: str | None = None, experiment: str = "facemask") -> pd.DataFrame:
    """Runs of an experiment in the tracking store, best validation macro F1 first (empty when there is no
    store yet: reading never creates one)."""
    uri = uri or tracking_uri(TrackConfig())
    if missing_store(uri) is not None:
        return pd.DataFrame(columns=list(RUN_COLUMNS.values()))
    mlflow = _mlflow(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise FacemaskError(f"no experiment {experiment!r} in the tracking store {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs([found.experiment_id], output_format="pandas")
    if runs.empty:
        return pd.DataFrame(columns=list(RUN_COLUMNS.values()))
    table = pd.DataFrame({short: runs[col] if col in runs else None for col, short in RUN_COLUMNS.items()})
    table["size"] = table.pop("h").astype(str) + "x" + table.pop("w").astype(str)
    return table.sort_values("macro_f1", ascending=False, na_position="last").reset_index(drop=True)


def diff_runs(a: str, b: str, uri: str | None = None, experiment: str = "facemask") -> list[tuple[str, str, str]]:
    """[(config key, value in a, value in b)] for the keys whose values differ; runs by name or id."""
    uri = uri or tracking_uri(TrackConfig())
    if (path := missing_store(uri)) is not None:
        raise FacemaskError(f"no runs yet: there is no tracking store {path}")
    mlflow = _mlflow(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise FacemaskError(f"no experiment {experiment!r} in the tracking store {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs([found.experiment_id], output_format="list")

    def pick(name: str):
        matches = [r for r in runs if name in (r.info.run_id, r.info.run_name)]
        if not matches:
            raise FacemaskError(f"no run named {name!r} in experiment {experiment!r}")
        return matches[0].data.params

    pa, pb = pick(a), pick(b)
    keys = sorted(set(pa) | set(pb))
    return [(k, pa.get(k, "-"), pb.get(k, "-")) for k in keys if pa.get(k) != pb.get(k)]
