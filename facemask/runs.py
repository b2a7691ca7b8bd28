"""The run folder: the one module that knows its file names, saves and loads its checkpoints (one error style),
holds the training state that ``last.pt`` resumes, and loads a run's config and model.

A run folder is what users share: ``config.yaml`` (the resolved config), ``split.csv`` (person -> train/val),
``metrics.csv`` (one row per epoch), ``best.pt`` (the epoch chosen by ``train.select_metric``), ``last.pt``
(everything needed to resume, also mid-epoch), ``eval.json`` (best model on validation), ``val_predictions.csv``,
``report.html`` (+ ``report/``), and after ``facemask export`` ``model.onnx`` + ``model.json``.

Checkpoints load with ``torch.load(weights_only=True)``: tensors and plain data only. A run's saved config never
makes facemask import code (see facemask.data.faces: ``--trust-run-code``).
"""
from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from facemask.config import Config, config_from_dict
from facemask.errors import FacemaskError
from facemask.io import atomic_write, atomic_write_text, cpu_count, first_line

if TYPE_CHECKING:  # torch is imported where it is used, so that light commands can name run files quickly
    import torch

CONFIG = "config.yaml"
SPLIT = "split.csv"
METRICS = "metrics.csv"
BEST = "best.pt"
LAST = "last.pt"
EVAL = "eval.json"
EVAL_VAL = "eval-val.json"
EVAL_DATA = "eval-data.json"
VAL_PREDICTIONS = "val_predictions.csv"
NO_FACE = "no_face.csv"
SKIPPED = "skipped_images.csv"
CORRECTIONS = "corrections_applied.txt"
TRACKING = "tracking.json"
REPORT = "report.html"
REPORT_DIR = "report"
TENSORBOARD = "tensorboard"
ONNX = "model.onnx"
ONNX_META = "model.json"
OOF = "oof.csv"
KFOLD = "kfold.json"
CHECKPOINT_FORMAT = 1


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """``torch.save`` through a temporary file and a rename (a crash mid-save keeps the previous file). Serialised
    in memory first, so that a failed write (disk full) is an OSError that says why, not torch's zip-writer text."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = ("config", "model")) -> dict:
    """A facemask checkpoint (tensors and plain data only); any problem is one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise FacemaskError(f"{path} not found")
    if path.is_dir():
        raise FacemaskError(f"{path} is a folder, not a checkpoint")
    if path.stat().st_size == 0:
        raise FacemaskError(f"checkpoint {path} is empty (0 bytes): the run was stopped before it was written")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message suggests weights_only=False: never do that
        raise FacemaskError(f"{path} is not a facemask checkpoint: it holds objects other than tensors and plain "
                            "data, which facemask never loads") from err
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise FacemaskError(f"checkpoint {path} is truncated or corrupt ({first_line(err)})") from err
    if not isinstance(state, dict) or not all(key in state for key in keys):
        raise FacemaskError(f"{path} is not a facemask checkpoint (no {' / '.join(keys)} inside)")
    return state


@dataclass
class TrainState:
    """What ``last.pt`` holds to continue a run exactly: the progress counters and best-so-far figures as plain
    fields, and the stateful parts (model, optimizer, schedule, EMA) as objects with ``state_dict`` /
    ``load_state_dict``, plus every RNG the loop draws from."""

    config: dict[str, Any]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    ema: Any = None  # timm ModelEmaV3 (its .module is saved)
    device: Any = "cpu"  # torch.device: where the RNG state is taken from (CUDA's too)
    epoch: int = 0  # epochs completed
    rows: list[dict] = field(default_factory=list)  # metrics.csv so far
    best_score: float = -math.inf
    best_epoch: int = -1
    best_val: dict | None = None
    melted: bool = False
    finished: bool = False
    progress: dict | None = None  # the engine's EpochProgress.state_dict() of an unfinished epoch

    FIELDS = ("epoch", "rows", "best_score", "best_epoch", "best_val", "melted", "finished", "progress")

    def state_dict(self) -> dict:
        from facemask.utils import rng_state

        return {"format": CHECKPOINT_FORMAT, "config": self.config, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "rng": rng_state(torch_device(self.device)), "metrics": self.rows[-1] if self.rows else {},
                **{name: getattr(self, name) for name in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        from facemask.utils import set_rng_state

        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        set_rng_state(state["rng"], torch_device(self.device))
        for name in self.FIELDS:
            if name in state:
                setattr(self, name, state[name])
        self.rows = list(self.rows)
        self.finished = bool(state.get("finished", False))  # checkpoints from before the flag have none


def torch_device(device):
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


class Run:
    """A run folder. ``Run.open(path)`` accepts the folder or a checkpoint inside it."""

    def __init__(self, path: str | Path, checkpoint: str = BEST):
        self.path = Path(path)
        self.checkpoint = checkpoint

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> Run:
        """A new folder ``<output_dir>/<name>-<time>`` (with -2, -3 ... when that exists)."""
        base = Path(output_dir)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path, suffix = base / f"{name}-{stamp}", 2
        while path.exists():
            path, suffix = base / f"{name}-{stamp}-{suffix}", suffix + 1
        try:
            path.mkdir(parents=True)
        except OSError as err:
            raise FacemaskError(f"cannot create run folder {path}: {err.strerror or err}") from err
        return cls(path)

    @classmethod
    def open(cls, run: str | Path | Run, checkpoint: str = BEST) -> Run:
        """An existing run from its folder, or from a checkpoint file (whose folder is the run)."""
        if isinstance(run, Run):
            return run
        path = Path(run)
        if path.is_file():
            return cls(path.parent, path.name)
        if not path.is_dir():
            raise FacemaskError(f"run folder {path} not found")
        if not (path / checkpoint).is_file():
            raise FacemaskError(f"{path / checkpoint} not found (is {path} a facemask run folder?)")
        return cls(path, checkpoint)

    # ---- files ------------------------------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self / name, text)
        return self / name

    def write_csv(self, name: str, frame: pd.DataFrame, **kwargs) -> Path:
        return self.write_text(name, frame.to_csv(index=False, **kwargs))

    def save_checkpoint(self, name: str, state: dict) -> Path:
        save_checkpoint(state, self / name)
        return self / name

    def load_checkpoint(self, name: str | None = None) -> dict:
        return load_checkpoint(self / (name or self.checkpoint))

    def save_config(self, cfg: Config) -> Path:
        return self.write_text(CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def save_split(self, train: pd.DataFrame, val: pd.DataFrame) -> Path:
        split = pd.concat([train[["person"]].drop_duplicates().assign(side="train"),
                           val[["person"]].drop_duplicates().assign(side="val")])
        return self.write_csv(SPLIT, split)

    def split(self) -> pd.DataFrame:
        """person, side (train / val) as written when the run started."""
        try:
            split = pd.read_csv(self / SPLIT, dtype=str, keep_default_na=False)
        except FileNotFoundError as err:
            raise FacemaskError(f"{self / SPLIT} not found (is {self.path} a facemask run folder?)") from err
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise FacemaskError(f"{self / SPLIT} is not a readable CSV: {first_line(err)}") from err
        if not {"person", "side"} <= set(split.columns):
            raise FacemaskError(f"{self / SPLIT} has no person and side columns")
        return split

    # ---- config and model -------------------------------------------------------------------------------------
    def config(self) -> Config:
        """The config saved with the run's checkpoint (the resolved config training used)."""
        return self._config_of(self.load_checkpoint(), self / self.checkpoint)

    @staticmethod
    def _config_of(state: dict, where: Path) -> Config:
        try:
            return config_from_dict(state["config"])
        except FacemaskError as err:
            raise FacemaskError(f"{where}: saved config is invalid: {err}") from err

    def load_model(self, device: str = "cpu") -> tuple[Config, torch.nn.Module]:
        """(config, model in eval mode on ``device``, in the run's memory layout) from the run's checkpoint."""
        import torch

        from facemask.models.factory import create_model
        from facemask.utils import resolve_device

        where = self / self.checkpoint
        state = self.load_checkpoint()
        cfg = self._config_of(state, where)
        cfg.model.pretrained = "none"  # the checkpoint carries the weights
        model = create_model(cfg.model, age_thresholds=cfg.data.age_thresholds)
        try:
            model.load_state_dict(state["model"], strict=True)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise FacemaskError(f"checkpoint {where} does not fit model {cfg.model.name}: {first_line(err)}") from err
        model = model.to(resolve_device(device, "--device")).eval()
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        torch.set_num_threads(cfg.train.threads or cpu_count())
        return cfg, model


def run_path(run: str | Path) -> Path:
    """The run folder of ``run`` (a folder or a checkpoint inside one), without checking anything."""
    path = Path(run)
    return path.parent if path.is_file() else path
