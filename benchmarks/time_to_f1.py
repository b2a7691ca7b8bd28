"""Time to quality: wall time and held-out macro F1 after each epoch for facemask's CPU recipe, against a
baseline-style pipeline (same model, plain cross-entropy + Adam, full JPEG decode + resize every epoch, one
loader worker, default layout), on the same training and validation people, measured one after the other in one
run and printed as two curves.

The ratio, defined once: the target is the baseline's *best* validation macro F1 over its epochs; each side's time
is the wall time, from the start of its training call (so caching and face detection are included), of its first
epoch reaching the target; the ratio is facemask's time over the baseline's (target <= 0.5).

    python benchmarks/time_to_f1.py --data ../standin/train [--epochs 4] [--baseline-epochs 3] [--people 600]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import BaselineDataset  # noqa: E402

from facemask.config import load_config  # noqa: E402
from facemask.data.layout import read_train  # noqa: E402
from facemask.data.split import split_by_person  # noqa: E402
from facemask.evaluation.metrics import macro_f1  # noqa: E402
from facemask.io import cpu_count  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402
from facemask.training.trainer import fit  # noqa: E402
from facemask.utils import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def subset_root(data: str, people: int | None) -> str:
    """A train folder with the first ``people`` people of ``data`` (symlinked), for a shorter benchmark."""
    if not people:
        return data
    import pandas as pd

    out = Path(tempfile.mkdtemp()) / "train"
    (out / "images").mkdir(parents=True)
    table = pd.read_csv(Path(data) / "train.csv", dtype=str).sample(frac=1.0, random_state=0).head(people)
    table.to_csv(out / "train.csv", index=False)
    for folder in table["path"]:
        (out / "images" / folder).symlink_to((Path(data) / "images" / folder).resolve())
    return str(out)


def run_facemask(data: str, epochs: int, out: str, config: str) -> list[tuple[float, float]]:
    cfg = load_config(config, [f"data.root={data}", f"train.output_dir={out}", f"train.epochs={epochs}",
                               f"data.cache_dir={out}/cache", "train.progress=false", "track.mlflow=false",
                               "train.report=false", "data.val_fraction=0.2"])
    start, points = time.perf_counter(), []
    fit(cfg, on_epoch=lambda row: points.append((time.perf_counter() - start, row["val_macro_f1"])))
    return points


def run_baseline(data: str, epochs: int) -> list[tuple[float, float]]:
    cfg = load_config(ROOT / "configs" / "cpu.yaml", ["data.val_fraction=0.2"])
    samples = read_train(data)
    train, val = split_by_person(samples, cfg.data.val_fraction, cfg.train.seed)  # the same people as facemask's
    seed_everything(cfg.train.seed)
    model = create_model(cfg.model)
    model.mean.zero_()  # the baseline normalises in its loader
    model.std.fill_(1.0)
    size = (cfg.data.height, cfg.data.width)
    loader = DataLoader(BaselineDataset(train.file, train.label, size), batch_size=32, shuffle=True, num_workers=1,
                        drop_last=True)
    val_loader = DataLoader(BaselineDataset(val.file, val.label, size), batch_size=64, num_workers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    start, points = time.perf_counter(), []
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            preds = np.concatenate([model(x).argmax(1).numpy() for x, _ in val_loader])
        points.append((time.perf_counter() - start, macro_f1(val.label.to_numpy(), preds)))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a train folder, e.g. ../standin/train")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--baseline-epochs", type=int, default=3)
    parser.add_argument("--people", type=int, help="use only this many people (shorter run)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu.yaml"), help="facemask's recipe "
                        "(the wall time includes building its cache, face detection included)")
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    data = subset_root(args.data, args.people)
    ours = run_facemask(data, args.epochs, tempfile.mkdtemp(), args.config)
    base = run_baseline(data, args.baseline_epochs)
    print("epoch  facemask: seconds  macro F1 | baseline: seconds  macro F1")
    for i in range(max(len(ours), len(base))):
        a = f"{ours[i][0]:9.0f}  {ours[i][1]:.4f}" if i < len(ours) else " " * 17
        b = f"{base[i][0]:9.0f}  {base[i][1]:.4f}" if i < len(base) else ""
        print(f"{i + 1:5d}  {a:>26} | {b}")
    result = time_to_target(ours, base)
    if result["facemask_seconds"] is None:
        print(f"facemask did not reach the baseline's best {result['target']:.4f} in {args.epochs} epochs")
    else:
        print(f"baseline's best validation macro F1 {result['target']:.4f}, first reached at its epoch "
              f"{result['baseline_epoch']} after {result['baseline_seconds']:.0f} s; facemask reached it at epoch "
              f"{result['facemask_epoch']} after {result['facemask_seconds']:.0f} s: ratio {result['ratio']:.2f} "
              "(target <= 0.5)")


def time_to_target(ours: list[tuple[float, float]], base: list[tuple[float, float]]) -> dict:
    """The one definition of the ratio (see the module's docstring): curves are [(seconds, macro F1)] per epoch."""
    target = max(f1 for _, f1 in base)
    base_epoch, (base_time, _) = next((i, p) for i, p in enumerate(base, 1) if p[1] >= target)
    reached = next(((i, t) for i, (t, f1) in enumerate(ours, 1) if f1 >= target), None)
    return {"target": target, "baseline_epoch": base_epoch, "baseline_seconds": base_time,
            "facemask_epoch": reached[0] if reached else None, "facemask_seconds": reached[1] if reached else None,
            "ratio": reached[1] / base_time if reached else None}


if __name__ == "__main__":
    main()
