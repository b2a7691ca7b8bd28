"""Test-time augmentation: named views of a uint8 batch whose class probabilities are averaged.

``flip`` mirrors left-right; ``scale:F`` feeds the image resized by F (the backbone pools globally, so any size
works); ``zoom:F`` crops the central fraction F and resizes it back to the input size. The original view is
always included.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from facemask.errors import ConfigError

View = Callable[[torch.Tensor], torch.Tensor]


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    resized = F.interpolate(images.float(), size=(height, width), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.clamp(0, 255)


def _scale(factor: float) -> View:
    def view(images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        return _resize(images, max(8, round(h * factor)), max(8, round(w * factor)))
    return view


def _zoom(fraction: float) -> View:
    def view(images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
        top, left = (h - ch) // 2, (w - cw) // 2
        return _resize(images[..., top:top + ch, left:left + cw], h, w)
    return view


def parse_tta(spec: str | None) -> list[tuple[str, View]]:
    """``"flip,scale:1.15,zoom:0.9"`` -> [(name, view)], the identity first."""
    views: list[tuple[str, View]] = [("original", lambda x: x)]
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, _, arg = item.partition(":")
        try:
            if name == "flip" and not arg:
                views.append((item, lambda x: torch.flip(x, dims=[-1])))
            elif name == "scale" and float(arg) > 0:
                views.append((item, _scale(float(arg))))
            elif name == "zoom" and 0 < float(arg) <= 1:
                views.append((item, _zoom(float(arg))))
            else:
                raise ValueError(item)
        except ValueError:
            raise ConfigError(f"unknown TTA view {item!r} (known: flip, scale:F with F > 0, zoom:F with 0 < F <= 1)")
    return views
