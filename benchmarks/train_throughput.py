"""Training throughput, side by side in one run, on the same model and batch size:

  (a) compute-only limit: forward + backward + AdamW step on uint8 batches already in memory, for each setting
      (default, channels-last, bf16 autocast, bf16 + channels-last); the fastest is used for (b);
  (b) facemask's pipeline: the decoded-image cache, the epoch sampler, the preset transforms, the DataLoader and
      the engine's train_one_epoch, with (a)'s fastest setting;
  (c) a baseline-style loader: PIL decode of the full JPEG + resize + ToTensor/Normalize every epoch, one worker
      (kept alive across the timed batches) beside the compute threads, in (b)'s memory layout and precision, so
      that b/c compares the loaders alone.

Prints img/s, the ratios b/a and b/c for each input size, and the layout gain (channels-last over the default
layout in (a)) separately. Uses the stand-in (--data) when given, otherwise a
synthetic dataset made by facemask's demo generator.

    python benchmarks/train_throughput.py --data ../standin/train [--sizes 128x96 256x192] [--batches 12]

With --loader-grid it also measures (b) for each split of the CPU between DataLoader workers and compute threads
(--augment sets the presets, e.g. those of configs/cpu.yaml, whose per-image work is what workers would take over).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bf16_supported, images_per_second  # noqa: E402

from facemask.config import load_config  # noqa: E402
from facemask.data.covers import load_covers, uses_covers  # noqa: E402
from facemask.data.demo import make_demo_dataset  # noqa: E402
from facemask.data.layout import read_train  # noqa: E402
from facemask.data.loaders import batch_augment, load_pixels, make_loader, resolve_workers  # noqa: E402
from facemask.data.samplers import EpochSampler  # noqa: E402
from facemask.data.transforms import build_transforms  # noqa: E402
from facemask.io import cpu_count  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402
from facemask.models.runtime import autocast  # noqa: E402
from facemask.training.engine import EpochProgress, train_one_epoch  # noqa: E402
from facemask.training.losses import create_loss  # noqa: E402
from facemask.training.optim import create_optimizer  # noqa: E402


def compute_step(cfg, channels_last: bool, bf16: bool, batch: int, compiled: bool = False):
    """One forward + backward + optimizer step on a uint8 batch in memory (``compiled``: through torch.compile)."""
    model = create_model(cfg.model)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    optimizer = create_optimizer(model, cfg.optim)
    loss_fn = create_loss(cfg.loss)
    forward = torch.compile(model) if compiled else model
    x = torch.randint(0, 256, (batch, 3, cfg.data.height, cfg.data.width), dtype=torch.uint8)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 18, (batch,))
    device = torch.device("cpu")

    def step():
        with autocast(device, "bf16" if bf16 else "fp32"):
            logits = forward(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def pipeline_rate(cfg, samples, batches: int) -> float:
    """Images/s of train_one_epoch over ``batches`` batches of the real loader (cache built beforehand)."""
    pixels, _ = load_pixels(samples["file"], cfg, progress=False)
    train_tf, _ = build_transforms(cfg.data.augment, cfg.aug)
    subset = samples.iloc[: batches * cfg.data.batch_size]
    sampler = EpochSampler(subset["label"].to_numpy(), 0, cfg.data.sampler)
    device = torch.device("cpu")
    augment = batch_augment(cfg, device)  # data.augment_mode=batch: the loop augments whole batches
    covers = load_covers(pixels, samples, progress=False) if uses_covers(cfg.data.augment) else None  # mask_restyle
    loader = make_loader(subset["file"], subset["label"], cfg, train_tf, pixels, list(range(len(subset))),
                         sampler=sampler, defer_augment=augment is not None, covers=covers)
    model = create_model(cfg.model)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(model, cfg.optim)
    loss_fn = create_loss(cfg.loss)
    for epoch in range(2):  # epoch 0 warms up kernels and workers
        progress = EpochProgress()
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        train_one_epoch(model, loader, loss_fn=loss_fn, optimizer=optimizer, scheduler=None, device=device,
                        epoch=epoch, progress=progress, updates_per_epoch=len(loader),
                        channels_last=cfg.train.channels_last, show_progress=False, precision=cfg.train.precision,
                        augment=augment)
        elapsed = time.perf_counter() - start
    return progress.seen / elapsed


class BaselineDataset(Dataset):
    """What the competition baseline did: decode the whole JPEG, resize, to tensor, normalise, every epoch."""

    def __init__(self, files, labels, size):
        self.files, self.labels = list(files), list(labels)
        self.transform = transforms.Compose([transforms.Resize(size, Image.BILINEAR), transforms.ToTensor(),
                                             transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(Image.open(self.files[i]).convert("RGB")), self.labels[i]


def baseline_rate(cfg, samples, batches: int) -> float:
    """(c): the baseline's loader feeding the same training step as (b) (same layout and precision)."""
    subset = samples.iloc[: batches * cfg.data.batch_size]
    loader = DataLoader(BaselineDataset(subset["file"], subset["label"], (cfg.data.height, cfg.data.width)),
                        batch_size=cfg.data.batch_size, shuffle=True, num_workers=1, drop_last=True,
                        persistent_workers=True)  # the worker lives across the epochs: no start-up in the timing
    model = create_model(cfg.model).train()
    channels_last = cfg.train.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.mean.zero_()  # the baseline normalises in the loader: make the model's own normalisation a no-op
    model.std.fill_(1.0)
    optimizer = create_optimizer(model, cfg.optim)
    loss_fn = create_loss(cfg.loss)
    for epoch in range(2):  # epoch 0 warms up kernels and the worker
        seen, start = 0, time.perf_counter()
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(torch.device("cpu"), cfg.train.precision):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        elapsed = time.perf_counter() - start
    return seen / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a train folder (default: a synthetic one made here)")
    parser.add_argument("--sizes", nargs="+", default=["128x96", "256x192"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12, help="batches per measured epoch in (b) and (c)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per setting in (a)")
    parser.add_argument("--augment", default="flip", help="augmentation presets used by (b)")
    parser.add_argument("--augment-mode", nargs="+", default=["per_image"], choices=["per_image", "batch"],
                        help="(b)'s data.augment_mode: torchvision per image, or vectorised per batch; "
                             "both (--augment-mode per_image batch) are measured side by side")
    parser.add_argument("--config", help="take --augment's parameters (aug.*) from this recipe, e.g. configs/cpu.yaml")
    parser.add_argument("--loader-grid", action="store_true", help="also measure (b) for workers x threads")
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    data = args.data
    if data is None:
        data = str(make_demo_dataset(Path(tempfile.mkdtemp()) / "demo", people=80, eval_fraction=0.0) / "train")
    samples = read_train(data).sample(frac=1.0, random_state=0).reset_index(drop=True)
    cache = tempfile.mkdtemp()
    print(f"efficientnet_lite0, batch {args.batch}, {cpu_count()} threads, CPU bf16: {bf16_supported()}, data {data}, "
          f"augment {args.augment} ({', '.join(args.augment_mode)}"
          + (f", parameters of {args.config})" if args.config else ")"))
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        base = ["model.pretrained=none", f"data.height={h}", f"data.width={w}", f"data.batch_size={args.batch}",
                f"data.cache_dir={cache}", "train.progress=false", f"data.augment={args.augment}"]
        if args.config:  # the recipe's augmentation parameters, the benchmark's model and sizes
            recipe = load_config(args.config)
            base += [f"aug.{k}={json.dumps(v)}" for k, v in dataclasses.asdict(recipe.aug).items()]
        settings = {"default": (False, False), "channels-last": (True, False)}
        if bf16_supported():
            settings |= {"bf16": (False, True), "bf16 + channels-last": (True, True)}
        limits = {}
        for name, (cl, bf16) in settings.items():
            cfg = load_config(None, base)
            limits[name] = images_per_second(compute_step(cfg, cl, bf16, args.batch), args.batch, seconds=args.seconds)
        best = max(limits, key=limits.get)
        cl, bf16 = settings[best]
        fastest = [f"train.channels_last={str(cl).lower()}", f"train.precision={'bf16' if bf16 else 'fp32'}"]
        cfgs = {mode: load_config(None, base + fastest + [f"data.augment_mode={mode}"]) for mode in args.augment_mode}
        cfg = cfgs[args.augment_mode[0]]
        load_pixels(samples["file"], cfg, progress=False)  # the cache is built once, outside the timing
        b = {mode: pipeline_rate(mode_cfg, samples, args.batches) for mode, mode_cfg in cfgs.items()}
        c = baseline_rate(cfg, samples, args.batches)
        a = limits[best]
        print(f"\n{size}: (a) compute limit " + ", ".join(f"{k} {v:.1f}" for k, v in limits.items()) + " img/s")
        for mode, rate in b.items():
            print(f"{size}: (a) fastest = {best}: {a:.1f} img/s | (b) facemask pipeline ({best}, {mode}): {rate:.1f} "
                  f"img/s | (c) baseline loader ({best}): {c:.1f} img/s | b/a = {rate / a:.2f}  b/c = {rate / c:.2f} "
                  f"(loaders alone)")
        print(f"{size}: layout gain channels-last / default in (a): "
              f"{limits['channels-last'] / limits['default']:.2f}")
        if args.loader_grid:
            loader_grid(cfg, samples, args.batches, size)


def loader_grid(cfg, samples, batches: int, size: str) -> None:
    """(b) for each (DataLoader workers, compute threads) pair that fits the CPU; facemask's default is marked."""
    cores = cpu_count()
    pairs = sorted({(0, cores), (1, cores), (1, max(1, cores - 1)), (2, cores), (2, max(1, cores - 2))})
    default = (resolve_workers(cfg.data), cfg.train.threads or cores)
    rates = {}
    for workers, threads in pairs:
        cfg.data.num_workers = workers
        torch.set_num_threads(threads)
        rates[(workers, threads)] = pipeline_rate(cfg, samples, batches)
    torch.set_num_threads(cores)
    best = max(rates, key=rates.get)
    print(f"{size}: (b) by workers x threads, augment={cfg.data.augment}: " + ", ".join(
        f"{w}w x {t}t {r:.1f}{' (default)' if (w, t) == default else ''}" for (w, t), r in rates.items())
        + f" img/s; fastest {best[0]}w x {best[1]}t, default = {rates[default] / rates[best]:.2f} of it")


if __name__ == "__main__":
    main()
