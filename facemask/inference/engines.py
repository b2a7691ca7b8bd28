"""The forward passes prediction runs on: PyTorch (channels-last, optional bf16 autocast) or ONNX Runtime on the
run's ``model.onnx`` (from ``facemask export``), both as ``engine(uint8 NCHW batch) -> logits`` on the CPU.

``engine="auto"`` picks ONNX Runtime when the run has an export of the same checkpoint that is up to date (the
fastest CPU engine; same answers within 1e-5), else PyTorch. ``--engine onnx`` never builds the PyTorch model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from facemask.config import Config
from facemask.errors import ConfigError, FacemaskError
from facemask.io import first_line
from facemask.models.runtime import PRECISIONS, torch_forward
from facemask.runs import ONNX, ONNX_META, Run
from facemask.utils import resolve_device

ENGINES = ("auto", "torch", "onnx")


class OnnxEngine:
    """Callable like the PyTorch model: a float/uint8 NCHW tensor -> logits tensor, via ONNX Runtime."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FacemaskError(f"{path} not found: run `facemask export RUN` first")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on the console
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise FacemaskError(f"cannot load {path}: {first_line(err)}") from err

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {"images": images.float().contiguous().numpy()})[0]
        return torch.from_numpy(logits)


@dataclass
class Engine:
    """A run ready to predict: its config (decoding, input size) and its forward pass."""

    run: Run
    cfg: Config
    name: str  # torch | onnx
    forward: object  # images (uint8 NCHW) -> logits

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)

    @property
    def size(self) -> tuple[int, int]:
        return self.cfg.data.height, self.cfg.data.width


def onnx_is_current(run: Run) -> bool:
    """The run has a model.onnx exported from the checkpoint in use, and that checkpoint has not changed since."""
    meta_path, onnx_path, ckpt = run / ONNX_META, run / ONNX, run / run.checkpoint
    if not (meta_path.is_file() and onnx_path.is_file() and ckpt.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    stat = ckpt.stat()
    return (isinstance(meta, dict) and meta.get("checkpoint") == run.checkpoint
            and meta.get("checkpoint_size") == stat.st_size and meta.get("checkpoint_mtime_ns") == stat.st_mtime_ns)


def load_engine(run: str | Path | Run, engine: str = "auto", device: str = "auto", precision: str = "fp32",
                checkpoint: str = "best.pt") -> Engine:
    """The run's forward pass on ``engine``; one line for an unknown name, a missing export or a bad device."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown --engine {engine!r} (known: {', '.join(ENGINES)})")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r} (known: {', '.join(PRECISIONS)})")
    run = Run.open(run, checkpoint)
    dev = resolve_device(device, "--device")
    if engine == "auto":
        engine = "onnx" if dev.type == "cpu" and precision == "fp32" and onnx_is_current(run) else "torch"
    if engine == "onnx":
        if precision != "fp32":
            raise ConfigError("--precision bf16 is for the PyTorch engine; ONNX Runtime runs the fp32 export")
        if dev.type != "cpu":
            raise ConfigError(f"--engine onnx runs on the CPU; drop --device {device}")
        cfg = run.config()  # the checkpoint's config only: the PyTorch model is not built
        return Engine(run, cfg, "onnx", OnnxEngine(run / ONNX, cfg.train.threads))
    cfg, model = run.load_model(device=str(dev))
    return Engine(run, cfg, "torch", torch_forward(model, dev, cfg.train.channels_last, precision))
