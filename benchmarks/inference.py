"""Prediction throughput of the default model, side by side in one run: PyTorch eager with default settings,
PyTorch with the fastest CPU settings found (channels-last, bf16 autocast where the CPU has it), and ONNX Runtime.

    python benchmarks/inference.py [--sizes 128x96 256x192] [--batch 64] [--threads 0] [--seconds 6]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bf16_supported, images_per_second  # noqa: E402

from facemask.config import ModelConfig  # noqa: E402
from facemask.io import cpu_count  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402


def torch_variant(model, images, channels_last: bool, bf16: bool):
    """One prediction step of ``model`` in eval mode (BatchNorm with its running statistics, as predict runs it)."""
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).eval()
    x = images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()

    @torch.inference_mode()
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x).float().softmax(1)
    return step


def onnx_step(model, images, threads: int):
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "m.onnx"
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    torch.onnx.export(model.to(memory_format=torch.contiguous_format), (images[:2].contiguous(),), str(path),
                      input_names=["images"], output_names=["logits"], dynamic_shapes={"images": dims},
                      dynamo=True, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"images": images.contiguous().numpy()}
    return lambda: session.run(None, feed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--sizes", nargs="+", default=["128x96", "256x192"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0: all CPUs this process may use")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(ModelConfig(name=args.model, pretrained="none")).eval()
    bf16 = bf16_supported()
    print(f"{args.model}, batch {args.batch}, {threads} threads, torch {torch.__version__}, CPU bf16: {bf16}")
    variants = {"eager fp32 (default settings)": (False, False), "channels-last fp32": (True, False)}
    if bf16:
        variants |= {"bf16 autocast": (False, True), "bf16 + channels-last": (True, True)}
    header = f"{'size':>8}  " + "  ".join(f"{name:>30}" for name in [*variants, "onnxruntime fp32"])
    rows = []
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        images = torch.randint(0, 256, (args.batch, 3, h, w)).float()
        results = {name: images_per_second(torch_variant(model, images, *flags), args.batch, seconds=args.seconds)
                   for name, flags in variants.items()}
        results["onnxruntime fp32"] = images_per_second(onnx_step(model, images, threads), args.batch,
                                                        seconds=args.seconds)
        rows.append((size, results))
    print(header)
    for size, results in rows:
        base = results["eager fp32 (default settings)"]
        print(f"{size:>8}  " + "  ".join(f"{v:10.1f} img/s ({v / base:4.2f}x)".rjust(30) for v in results.values()))
    for size, results in rows:
        torch_only = {k: v for k, v in results.items() if not k.startswith("onnx")}
        best = max(torch_only, key=torch_only.get)
        eager = results["eager fp32 (default settings)"]
        print(f"{size}: fastest PyTorch setting: {best}, {torch_only[best] / eager:.2f}x eager; "
              f"ONNX Runtime {results['onnxruntime fp32'] / torch_only[best]:.2f}x that")


if __name__ == "__main__":
    main()
