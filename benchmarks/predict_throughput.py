"""Prediction throughput, side by side in one run: the inference compute limit (the fastest PyTorch setting on
uint8 batches in memory) against facemask's whole predict path (cache + loader + model, same setting), plus the
default-settings figure (eager fp32, contiguous), the time to build the decoded-image cache for a folder, and
the peak memory (RSS) of a short 256x192 batch-64 training run.

    python benchmarks/predict_throughput.py --data ../standin [--sizes 128x96 256x192] [--batch 64]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bf16_supported, images_per_second  # noqa: E402
from inference import torch_variant  # noqa: E402

from facemask.config import load_config  # noqa: E402
from facemask.data.demo import make_demo_dataset  # noqa: E402
from facemask.data.images import build_cache  # noqa: E402
from facemask.data.layout import read_eval, read_train  # noqa: E402
from facemask.data.loaders import load_pixels, make_loader  # noqa: E402
from facemask.data.transforms import build_transforms  # noqa: E402
from facemask.io import cpu_count  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402
from facemask.models.runtime import predict_probs  # noqa: E402

SETTINGS = {"eager fp32 (default settings)": (False, "fp32"), "channels-last fp32": (True, "fp32"),
            "bf16": (False, "bf16"), "bf16 + channels-last": (True, "bf16")}


def compute_limit(model, batch: int, h: int, w: int, channels_last: bool, precision: str, seconds: float) -> float:
    x = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8)
    return images_per_second(torch_variant(model, x, channels_last, precision == "bf16"), batch, seconds=seconds)


def pipeline_rate(model, cfg, files, channels_last: bool, precision: str) -> float:
    pixels, _ = load_pixels(files, cfg, progress=False)
    _, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    loader = make_loader(files, None, cfg, eval_tf, pixels, batch_size=cfg.data.batch_size)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    predict_probs(model, loader, torch.device("cpu"), channels_last, False, precision=precision)  # warm-up
    start = time.perf_counter()
    predict_probs(model, loader, torch.device("cpu"), channels_last, False, precision=precision)
    return len(files) / (time.perf_counter() - start)


def peak_training_rss(data: str, cache: str) -> float:
    """MiB of peak RSS of a child process training efficientnet_lite0 at 256x192, batch 64, for 8 steps."""
    script = textwrap.dedent(f"""
        from facemask.config import load_config
        from facemask.training.trainer import fit
        cfg = load_config(None, ["data.root={data}", "data.height=256", "data.width=192", "data.batch_size=64",
                                 "data.cache_dir={cache}", "train.epochs=1", "train.progress=false",
                                 "train.report=false", "track.mlflow=false", "model.pretrained=none",
                                 "train.output_dir={cache}/runs", "data.val_fraction=0.05"])
        steps = []
        def stop_after(step):
            if step >= 8:
                import os, signal
                os.kill(os.getpid(), signal.SIGINT)
        try:
            fit(cfg, on_step=stop_after)
        except Exception:
            pass
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a folder with train/ and eval/ (default: synthetic, made here)")
    parser.add_argument("--sizes", nargs="+", default=["128x96", "256x192"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=1024, help="eval images predicted by the pipeline")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    root = Path(args.data) if args.data else make_demo_dataset(Path(tempfile.mkdtemp()) / "demo", people=200)
    _, table = read_eval(root / "eval")
    files = table["file"].tolist()[: args.images]
    cache = tempfile.mkdtemp()
    model = create_model(load_config(None, ["model.pretrained=none"]).model).eval()  # as predict runs it
    settings = SETTINGS if bf16_supported() else {k: v for k, v in SETTINGS.items() if v[1] == "fp32"}
    print(f"efficientnet_lite0, batch {args.batch}, {cpu_count()} threads, CPU bf16: {bf16_supported()}")
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        limits = {name: compute_limit(model, args.batch, h, w, cl, p, args.seconds)
                  for name, (cl, p) in settings.items()}
        best = max(limits, key=limits.get)
        cl, precision = settings[best]
        cfg = load_config(None, [f"data.height={h}", f"data.width={w}", f"data.batch_size={args.batch}",
                                 f"data.cache_dir={cache}"])
        load_pixels(files, cfg, progress=False)
        rate = pipeline_rate(model, cfg, files, cl, precision)
        default = limits["eager fp32 (default settings)"]
        print(f"\n{size}: compute limit " + ", ".join(f"{k} {v:.1f}" for k, v in limits.items()) + " img/s")
        print(f"{size}: fastest = {best} ({limits[best] / default:.2f}x the default settings); facemask predict "
              f"path {rate:.1f} img/s = {rate / limits[best]:.2f} of the limit, {rate / default:.2f}x default")
    train_files = read_train(root / "train").file.tolist()
    every = train_files + table["file"].tolist()
    start = time.perf_counter()
    build_cache(every, (128, 96), tempfile.mkdtemp(), progress=False)
    print(f"\ncache build: {len(every)} images at 128x96 in {time.perf_counter() - start:.1f} s "
          f"({len(every) / (time.perf_counter() - start):.0f} img/s, {cpu_count()} processes)")
    print(f"peak RSS of a 256x192 batch-64 training run: {peak_training_rss(str(root / 'train'), cache):.0f} MiB")


if __name__ == "__main__":
    main()
