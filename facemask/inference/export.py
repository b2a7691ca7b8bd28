"""ONNX export (dynamic batch and image size) with its preprocessing recorded beside it, and an ONNX Runtime
engine. The exported graph includes the normalisation, so its input is RGB in 0..255 as float32 NCHW."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from facemask.data.labels import CLASS_NAMES
from facemask.data.loaders import decoding_of
from facemask.errors import FacemaskError
from facemask.utils import atomic_write_text

ONNX_NAME = "model.onnx"


def export_onnx(run: str | Path, out: str | Path | None = None, checkpoint: str = "best.pt") -> Path:
    """Write ``RUN/model.onnx`` (or ``out``) and ``<out>.json`` describing the expected input."""
    from facemask.inference.predict import load_run, run_dir_of

    cfg, model = load_run(run, checkpoint, "cpu")
    model = model.to(memory_format=torch.contiguous_format).float().eval()
    out = Path(out) if out else run_dir_of(run) / ONNX_NAME
    example = torch.randint(0, 256, (2, 3, cfg.data.height, cfg.data.width)).float()
    dims = {0: torch.export.Dim("batch", min=1, max=65536), 2: torch.export.Dim("height", min=16, max=4096),
            3: torch.export.Dim("width", min=16, max=4096)}
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"images": dims}, dynamo=True, verbose=False, external_data=False)
        tmp.replace(out)
    except Exception as err:  # noqa: BLE001 - exporter failures are long; keep the first line
        raise FacemaskError(f"ONNX export of {run} failed: {str(err).splitlines()[0]}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    meta = {
        "run": str(run_dir_of(run)), "checkpoint": checkpoint, "model": cfg.model.name,
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


class OnnxEngine:
    """Callable like the PyTorch model: a float/uint8 NCHW tensor -> logits tensor, via ONNX Runtime."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FacemaskError(f"{path} not found: run `facemask export RUN` first")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {"images": images.float().contiguous().numpy()})[0]
        return torch.from_numpy(logits)
