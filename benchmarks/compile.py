"""torch.compile against eager, side by side in one run: a training step (forward + backward + AdamW) and a
prediction step for efficientnet_lite0 on uint8 batches in memory, under channels-last fp32 and bf16 +
channels-last. Prints the compile time (first calls), img/s eager and compiled, the speed-up, and the largest
difference in predicted probabilities (compiled vs eager, so "F1 unchanged" can be judged).

    python benchmarks/compile.py [--sizes 128x96] [--batch 32] [--predict-batch 64] [--seconds 6]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bf16_supported, images_per_second  # noqa: E402
from train_throughput import compute_step  # noqa: E402

from facemask.config import load_config  # noqa: E402
from facemask.io import cpu_count  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402


def predict_step(bf16: bool, compiled: bool, x: torch.Tensor):
    torch.manual_seed(0)  # eager and compiled get the same weights, so their predictions can be compared
    model = create_model(load_config(None, ["model.pretrained=none"]).model)
    model = model.to(memory_format=torch.channels_last).eval()
    forward = torch.compile(model) if compiled else model
    out = {}

    @torch.inference_mode()
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out["probs"] = forward(x).float().softmax(1)
    return step, out


def timed_first_call(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["128x96"])
    parser.add_argument("--batch", type=int, default=32, help="training batch")
    parser.add_argument("--predict-batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    precisions = {"channels-last fp32": False} | ({"bf16 + channels-last": True} if bf16_supported() else {})
    print(f"efficientnet_lite0, {cpu_count()} threads, torch {torch.__version__}, CPU bf16: {bf16_supported()}")
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        for name, bf16 in precisions.items():
            rates, first = {}, {}
            for compiled in (False, True):
                cfg = load_config(None, ["model.pretrained=none", f"data.height={h}", f"data.width={w}"])
                step = compute_step(cfg, True, bf16, args.batch, compiled)
                first[compiled] = timed_first_call(step)
                rates[compiled] = images_per_second(step, args.batch, warmup=2, seconds=args.seconds)
            print(f"{size} train   {name:<22} eager {rates[False]:7.1f} img/s | compiled {rates[True]:7.1f} img/s "
                  f"({rates[True] / rates[False]:.2f}x) | compile {first[True] - first[False]:.0f} s")
            x = torch.randint(0, 256, (args.predict_batch, 3, h, w), dtype=torch.uint8)
            x = x.contiguous(memory_format=torch.channels_last)
            rates, first, probs = {}, {}, {}
            for compiled in (False, True):
                step, out = predict_step(bf16, compiled, x)
                first[compiled] = timed_first_call(step)
                probs[compiled] = out["probs"]
                rates[compiled] = images_per_second(step, args.predict_batch, warmup=2, seconds=args.seconds)
            diff = (probs[True] - probs[False]).abs().max().item()
            same = (probs[True].argmax(1) == probs[False].argmax(1)).float().mean().item()
            print(f"{size} predict {name:<22} eager {rates[False]:7.1f} img/s | compiled {rates[True]:7.1f} img/s "
                  f"({rates[True] / rates[False]:.2f}x) | compile {first[True] - first[False]:.0f} s | "
                  f"max prob diff {diff:.1e}, same class {same:.0%}")


if __name__ == "__main__":
    main()
