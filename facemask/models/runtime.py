"""Forward passes shared by training (validation) and inference: bf16 autocast, moving batches to the device in
the model's memory layout, and class probabilities over a whole loader."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast (CPU with AVX-512 BF16/AMX, or GPU), or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def torch_forward(model: torch.nn.Module, device: torch.device, channels_last: bool = True,
                  precision: str = "fp32") -> Callable[[torch.Tensor], torch.Tensor]:
    """``images (uint8 or float NCHW, any device) -> logits`` for a model in eval mode."""
    def forward(images: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return model(to_device(images, device, channels_last))
    return forward


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, loader: Iterable, device: torch.device, channels_last: bool = True,
                  progress: bool = True, desc: str = "predict", precision: str = "fp32"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (N, 18) float32, labels (N,)) over the whole loader, in its order."""
    model.eval()
    forward = torch_forward(model, device, channels_last, precision)
    probs, labels_out = [], []
    for images, labels in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        probs.append(forward(images).float().softmax(1))
        labels_out.append(labels)
    return torch.cat(probs).cpu().numpy(), torch.cat(labels_out).numpy()

