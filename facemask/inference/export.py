"""ONNX export (dynamic batch and image size) with its preprocessing recorded beside it. The exported graph
includes the normalisation, so its input is RGB in 0..255 as float32 NCHW. The ONNX Runtime engine that runs it
is in facemask.inference.engines."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from facemask.data.labels import CLASS_NAMES
from facemask.data.loaders import decoding_of
from facemask.errors import FacemaskError
from facemask.io import atomic_write_text, first_line
from facemask.runs import ONNX, Run


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress and warnings; keep the console to facemask's own lines."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(run: str | Path, out: str | Path | None = None, checkpoint: str = "best.pt") -> Path:
    """Write ``RUN/model.onnx`` (or ``out``) and ``<out>.json`` describing the expected input."""
    run = Run.open(run, checkpoint)
    cfg, model = run.load_model("cpu")
    model = model.to(memory_format=torch.contiguous_format).float().eval()
    out = Path(out) if out else run / ONNX
    if out.is_dir():
        raise FacemaskError(f"--out {out} is a folder; name the .onnx file to write")
    example = torch.randint(0, 256, (2, 3, cfg.data.height, cfg.data.width)).float()
    dims = {0: torch.export.Dim("batch", min=1, max=65536), 2: torch.export.Dim("height", min=16, max=4096),
            3: torch.export.Dim("width", min=16, max=4096)}
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with _quiet():
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_shapes={"images": dims}, dynamo=True, verbose=False, external_data=False)
        tmp.replace(out)
    except Exception as err:  # noqa: BLE001 - exporter failures are long; keep the first line
        raise FacemaskError(f"ONNX export of {run.path} failed: {first_line(err)}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    stat = (run / run.checkpoint).stat()
    meta = {
        "run": str(run.path), "checkpoint": run.checkpoint, "checkpoint_size": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns, "model": cfg.model.name,
        "input": {"name": "images", "dtype": "float32", "layout": "NCHW", "channels": "RGB", "range": [0, 255],
                  "height": cfg.data.height, "width": cfg.data.width, "batch": "dynamic",
                  "resize": "decode with EXIF orientation, convert to RGB, JPEG draft reduce, then as 'decoding' "
                            "says: centre crop, face crop, PIL bilinear resize to height x width (stretch) or "
                            "letterbox with grey (128) bars (facemask.data.images.load_image)",
                  "decoding": asdict(decoding_of(cfg, load_detector=False)),
                  "normalisation": "inside the graph: (x - mean*255) / (std*255)",
                  "mean": model.mean.flatten().div(255).tolist(), "std": model.std.flatten().div(255).tolist()},
        "output": {"name": "logits", "classes": list(CLASS_NAMES), "label": "mask*6 + gender*3 + age_group",
                   "age_thresholds": cfg.data.age_thresholds},
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=2))
    return out
