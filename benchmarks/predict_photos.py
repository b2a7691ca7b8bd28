"""Photos mode throughput (``facemask predict RUN PHOTOS...`` / ``facemask.load(RUN).predict``), side by side in one
run: photos/s and faces/s, split into decoding, face detection, framing each face, and the network, with the
network on PyTorch and on ONNX Runtime (the same faces, the same run).

    python benchmarks/predict_photos.py RUN [--photos DIR] [--count 40] [--batch 64]

Without --photos it makes group photos from facemask's synthetic demo people (1 to 4 people, 1024x768).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import facemask  # noqa: E402
from facemask.data.demo import make_demo_dataset  # noqa: E402
from facemask.data.faces import crop_box, detect_faces, get_detector  # noqa: E402
from facemask.data.images import crop_padded, fit, read_rgb  # noqa: E402
from facemask.inference.engines import OnnxEngine  # noqa: E402
from facemask.inference.export import export_onnx  # noqa: E402
from facemask.io import cpu_count  # noqa: E402


def group_photos(out: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` 1024x768 JPEGs, each with 1 to 4 demo people of 90 to 320 px width pasted on a grey backdrop."""
    demo = make_demo_dataset(out / "demo", people=24, eval_fraction=0.0, seed=seed)
    people = sorted((demo / "train" / "images").glob("*/*.*"))
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        canvas = Image.new("RGB", (1024, 768), tuple(int(v) for v in rng.integers(60, 200, 3)))
        x = 20
        for _ in range(int(rng.integers(1, 5))):
            width = int(rng.integers(90, 320))
            if x + width > 1024:
                break
            person = Image.open(people[int(rng.integers(len(people)))]).convert("RGB")
            person = person.resize((width, round(person.height * width / person.width)), Image.BILINEAR)
            canvas.paste(person, (x, int(rng.integers(0, max(1, 768 - person.height)))))
            x += width + int(rng.integers(10, 60))
        files.append(str(out / f"group{i:03d}.jpg"))
        canvas.save(files[-1], quality=90)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder (trained with data.face_crop for every face; else whole photos)")
    parser.add_argument("--photos", help="a folder of photos (default: synthetic group photos)")
    parser.add_argument("--count", type=int, default=40, help="synthetic photos to make")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="network passes timed (the fastest is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(cpu_count())
    work = Path(tempfile.mkdtemp(prefix="facemask-photos-"))
    if args.photos:
        files = sorted(str(p) for p in Path(args.photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        files = group_photos(work, args.count)
    model = facemask.load(args.run, engine="torch", batch_size=args.batch)
    framing, (torch_engine,) = model.framing, model.engines
    size, decoding = framing.sizes[0], framing.decodings[0]

    start = time.perf_counter()
    images = [read_rgb(f) for f in files]
    t_decode = time.perf_counter() - start
    boxes = []
    start = time.perf_counter()
    if framing.detector != "none":
        detector = get_detector(framing.detector)
        boxes = [detect_faces(np.asarray(img), detector, framing.min_face, framing.threshold) for img in images]
    t_detect = time.perf_counter() - start
    start = time.perf_counter()
    if framing.detector != "none":
        crops = [fit(crop_padded(img, crop_box(b, size[0] / size[1], decoding.face_margin)), size, decoding)
                 for img, found in zip(images, boxes) for b in found]
    else:
        crops = [fit(img, size, decoding) for img in images]
    t_frame = time.perf_counter() - start
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)

    def network(engine) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(batch), args.batch):
                    engine(batch[i:i + args.batch]).float().softmax(1)
            best = min(best, time.perf_counter() - start)
        return best
    t_torch = network(torch_engine)
    onnx_path = export_onnx(args.run, work / "model.onnx")
    t_onnx = network(OnnxEngine(onnx_path, cpu_count()))

    n_photos, n_faces = len(files), len(crops)
    print(f"{n_photos} photos ({'synthetic 1024x768 groups' if not args.photos else args.photos}), {n_faces} faces "
          f"(detector {framing.detector}, min face {framing.min_face} px), input {size[0]}x{size[1]}, "
          f"{cpu_count()} threads, one process")
    print(f"{'stage':<22}{'seconds':>9}{'ms / photo':>12}{'share (torch)':>15}{'share (onnx)':>14}")
    cpu = t_decode + t_detect + t_frame
    for name, t in (("decode", t_decode), ("detect faces", t_detect), ("frame each face", t_frame),
                    ("network: PyTorch", t_torch), ("network: ONNX Runtime", t_onnx)):
        torch_share = f"{t / (cpu + t_torch):.0%}" if "ONNX" not in name else ""
        onnx_share = f"{t / (cpu + t_onnx):.0%}" if "PyTorch" not in name else ""
        print(f"{name:<22}{t:9.2f}{1000 * t / n_photos:12.1f}{torch_share:>15}{onnx_share:>14}")
    for name, t in (("PyTorch", t_torch), ("ONNX Runtime", t_onnx)):
        total = cpu + t
        print(f"whole path with {name}: {n_photos / total:.1f} photos/s, {n_faces / total:.1f} faces/s "
              f"(network alone {n_faces / t:.0f} faces/s)")
    print(f"ONNX Runtime network / PyTorch network speed: {t_torch / t_onnx:.2f}x")


if __name__ == "__main__":
    main()
