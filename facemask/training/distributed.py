"""DistributedDataParallel switched on by torchrun's environment only (WORLD_SIZE > 1): gloo on CPU, NCCL on GPU.

Only rank 0 writes files, logs and tracks. Validation is sharded without padding and gathered in dataset order,
so its metrics equal a single-process evaluation of the same weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env(device_name: str) -> tuple[Dist, torch.device | None]:
    """(Dist, the device this rank must use or None) from torchrun's variables; starts the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return Dist(rank, world, local_rank), device


def shutdown(state: Dist) -> None:
    if state.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: Any, state: Dist) -> Any:
    if not state.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, state: Dist) -> bool:
    """True on every rank when ``flag`` is true on any (used so that all ranks stop at the same step)."""
    if not state.enabled:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def sync_buffers(model: torch.nn.Module, state: Dist) -> None:
    """Give every rank rank 0's BatchNorm statistics (each rank's last batch changed its own)."""
    if state.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def shard(n: int, state: Dist) -> np.ndarray:
    """This rank's positions of a dataset of ``n`` items: every world-th one, no padding."""
    return np.arange(state.rank, n, state.world)


def gather_rows(rows: np.ndarray, values: np.ndarray, n: int, state: Dist) -> np.ndarray:
    """Reassemble per-rank ``values`` (for dataset positions ``rows``) into dataset order on every rank."""
    if not state.enabled:
        return values
    parts: list = [None] * state.world
    dist.all_gather_object(parts, (rows, values))
    out = np.empty((n, *values.shape[1:]), dtype=values.dtype)
    for part_rows, part_values in parts:
        out[part_rows] = part_values
    return out


def gather_list(values: list, state: Dist) -> list:
    if not state.enabled:
        return values
    parts: list = [None] * state.world
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]
