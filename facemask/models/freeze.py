"""Freezing the backbone (all of it, or its first N stages) and melting it again."""
from __future__ import annotations

from timm.models import group_parameters
from torch import nn

from facemask.errors import ConfigError


def backbone_stages(backbone: nn.Module) -> list[list[str]]:
    """Parameter names of a timm backbone grouped stem-first by its own coarse ``group_matcher``."""
    if not hasattr(backbone, "group_matcher"):
        return [[name for name, _ in backbone.named_parameters()]]
    groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


def freeze(model: nn.Module, stages: int) -> list[str]:
    """Freeze the backbone's first ``stages`` stages (-1: all of it): no gradient, and the BatchNorm statistics of
    frozen layers stay as they are (those layers are kept in eval mode). Returns the frozen parameter names."""
    if stages == 0:
        return []
    groups = backbone_stages(model.backbone)
    if stages > len(groups):
        raise ConfigError(f"option model.freeze={stages}: {type(model.backbone).__name__} has {len(groups)} stages")
    if stages < 0:
        names = {n for n, _ in model.backbone.named_parameters()}
    else:
        names = {n for group in groups[:stages] for n in group}
    for name, param in model.backbone.named_parameters():
        if name in names:
            param.requires_grad_(False)
    modules = dict(model.backbone.named_modules())
    model.frozen_norms = [module for path, module in modules.items()
                          if isinstance(module, nn.modules.batchnorm._BatchNorm)
                          and any(f"{path}.{p}" in names for p, _ in module.named_parameters(recurse=False))]
    return sorted(names)


def melt(model: nn.Module) -> None:
    """Unfreeze everything."""
    for param in model.parameters():
        param.requires_grad_(True)
    model.frozen_norms = []
