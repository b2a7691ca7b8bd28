"""Face detection in photos of any kind, per mask state: competition photos pasted at several sizes onto varied
backgrounds (flat, gradient, noise, stripes, and busy scenes of shapes), the photos-mode detector run on each,
and the share of faces found per mask state (worn / incorrect / not worn) and face width, with the false
detections per photo, for each detector threshold, side by side in one run. With ``--masked FILE`` (a masked-face
filter from ``facemask train-detector``, trained on other people) the same canvases are also scanned with it beside
dlib's bare-face filter, and the rows are printed side by side (several files: one row each).

    python benchmarks/detection.py --data ../standin/eval [--photos 300] [--widths 40 80 160] \\
        [--thresholds -1.0 -0.8 -0.5 0.0] [--answers ../standin/eval_answers.csv] [--masked masked.svm ...]

A face counts as found when a detection's centre lies inside the pasted face (the face is where the competition
photos have it: centred, 44% down, about 62% of the photo's width).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.data.faces import HogDetector, detect_faces  # noqa: E402
from facemask.data.labels import MASK_NAMES, attribute_of  # noqa: E402
from facemask.data.layout import read_eval, read_train  # noqa: E402
from facemask.submission import read_csv_file  # noqa: E402

CANVAS = (1024, 768)
FACE_CENTRE, FACE_WIDTH = (0.5, 0.44), 0.62


def background(rng: np.random.Generator) -> Image.Image:
    w, h = CANVAS
    kind = rng.integers(5)
    if kind == 0:
        return Image.new("RGB", CANVAS, tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == 1:
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, h)[:, None, None]
        return Image.fromarray((top * (1 - t) + bottom * t).repeat(w, 1).astype(np.uint8))
    if kind == 2:
        noise = rng.normal(128, 50, (h // 8, w // 8, 3)).clip(0, 255).astype(np.uint8)
        return Image.fromarray(noise).resize(CANVAS, Image.BILINEAR)
    if kind == 3:
        period = int(rng.integers(8, 40))
        stripes = ((np.arange(w)[None, :] // period) % 2)[..., None] * rng.integers(60, 200, 3)
        return Image.fromarray(np.broadcast_to(stripes, (h, w, 3)).astype(np.uint8))
    scene = Image.new("RGB", CANVAS, tuple(int(v) for v in rng.integers(0, 256, 3)))  # a busy scene, no faces
    draw = ImageDraw.Draw(scene)
    for _ in range(int(rng.integers(20, 60))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, 300)), y0 + int(rng.integers(10, 300))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.4 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return scene.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))


def paste(photo: Image.Image, face_width: int, rng: np.random.Generator
          ) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The photo scaled so its face is ``face_width`` px wide, at a random place: (canvas, face box)."""
    scale = face_width / (FACE_WIDTH * photo.width)
    small = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.BILINEAR)
    canvas = background(rng)
    x = int(rng.integers(0, max(1, CANVAS[0] - small.width)))
    y = int(rng.integers(0, max(1, CANVAS[1] - small.height)))
    canvas.paste(small, (x, y))
    cx, cy = x + FACE_CENTRE[0] * small.width, y + FACE_CENTRE[1] * small.height
    half = face_width / 2
    return canvas, (cx - half, cy - half * 1.2, cx + half, cy + half * 1.2)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a train folder, or an eval folder with --answers")
    parser.add_argument("--answers", help="the eval folder's answers (for the mask state of each photo)")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--widths", type=int, nargs="+", default=[40, 80, 160])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[-1.0, -0.8, -0.5, 0.0])
    parser.add_argument("--min-face", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masked", nargs="+", default=[],
                        help="also scan with each of these masked-face filters (facemask train-detector)")
    args = parser.parse_args(argv)
    detectors = {"hog": HogDetector()}
    for file in args.masked:
        name = f"hog + {file}"
        if name in detectors:
            parser.error(f"--masked {file} is given twice")
        detectors[name] = HogDetector(masked=file)
    if args.answers:
        _, table = read_eval(args.data)
        truth = read_csv_file(args.answers, "answers file").set_index("ImageID")["ans"].astype(int)
        files, labels = table["file"].tolist(), table["image_id"].map(truth).to_numpy()
    else:
        samples = read_train(args.data)
        files, labels = samples["file"].tolist(), samples["label"].to_numpy()
    rng = np.random.default_rng(args.seed)
    chosen = rng.permutation(len(files))[: args.photos]
    lowest = min(args.thresholds)
    rows = []
    for n, index in enumerate(chosen):
        photo = Image.open(files[index]).convert("RGB")
        mask = MASK_NAMES[int(attribute_of(labels[index], "mask"))]
        for width in args.widths:
            canvas, (left, top, right, bottom) = paste(photo, width, rng)
            for name, detector in detectors.items():
                start = time.perf_counter()
                boxes = detect_faces(np.asarray(canvas), detector, args.min_face, lowest)
                seconds = time.perf_counter() - start
                on_face = [left <= (b[0] + b[2]) / 2 <= right and top <= (b[1] + b[3]) / 2 <= bottom for b in boxes]
                best = max((b[4] for b, hit in zip(boxes, on_face) if hit), default=float("nan"))
                for threshold in args.thresholds:
                    hits = [hit for b, hit in zip(boxes, on_face) if b[4] >= threshold]
                    rows.append({"photo": str(files[index]), "detector": name, "mask": mask, "width": width,
                                 "threshold": threshold, "found": any(hits), "false": len(hits) - sum(hits),
                                 "best score on the face": best, "seconds": seconds})
        if (n + 1) % 50 == 0:
            print(f"{n + 1}/{len(chosen)} photos", file=sys.stderr)
    table = pd.DataFrame(rows)
    rates = table.pivot_table(index=["detector", "threshold", "width"], columns="mask", values="found",
                              aggfunc="mean")
    rates = rates[[m for m in MASK_NAMES if m in rates.columns]]
    rates["false per photo"] = table.groupby(["detector", "threshold", "width"])["false"].mean()
    print(f"{len(chosen)} photos x {len(args.widths)} face widths on varied {CANVAS[0]}x{CANVAS[1]} backgrounds, "
          f"detect_all (min face {args.min_face} px); share of faces found per mask state:")
    print(rates.to_string(float_format=lambda v: f"{v:.3f}"))
    overall = table.pivot_table(index=["detector", "threshold"], columns="mask", values="found", aggfunc="mean")
    overall = overall[[m for m in MASK_NAMES if m in overall.columns]]
    overall["false per photo"] = table.groupby(["detector", "threshold"])["false"].mean()
    print("\nall widths:")
    print(overall.to_string(float_format=lambda v: f"{v:.3f}"))
    seconds = table.groupby("detector")["seconds"].mean()  # each scan counted once per threshold: the same mean
    print("\nseconds per canvas (compare the rows of one run): "
          + ", ".join(f"{name} {value:.3f}" for name, value in seconds.items()))
    return table


if __name__ == "__main__":
    main()
