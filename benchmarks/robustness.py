"""Robustness to framing: each run's validation people re-rendered as tight face crops, off-centre, 1:1 and 4:3
photos, at low resolution and as JPEG quality 30, scored with the run's own prediction path; prints macro F1,
mask F1 (worn / incorrect / not worn) and the mask-F1 change from the original framing (target: >= -0.05).

    python benchmarks/robustness.py RUN [RUN ...] [--data ../standin/train] [--tta flip] [--out robustness]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.evaluation.robustness import FRAMINGS, robustness_table  # noqa: E402
from facemask.inference.predict import run_probs, validation_samples  # noqa: E402
from facemask.runs import Run  # noqa: E402


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (or checkpoints)")
    parser.add_argument("--data", help="train folder holding the runs' validation people (default: the run's own)")
    parser.add_argument("--tta", default=None, help="TTA views, as for facemask predict (e.g. flip)")
    parser.add_argument("--framings", default=",".join(FRAMINGS), help="comma-separated subset of the framings")
    parser.add_argument("--out", default=None, help="folder for the rendered photos and robustness.json "
                                                    "(default: a temporary folder)")
    args = parser.parse_args(argv)
    framings = [name.strip() for name in args.framings.split(",") if name.strip()]
    unknown = [name for name in framings if name not in FRAMINGS]
    if unknown:
        parser.error(f"unknown framing {unknown[0]!r} (known: {', '.join(FRAMINGS)})")
    out = Path(args.out or tempfile.mkdtemp(prefix="facemask-robustness-"))
    tables = []
    for run in args.runs:
        cfg = Run.open(run).config()
        if args.data:
            cfg.data.root = args.data
        samples = validation_samples(run, cfg)
        name = Run.open(run).name
        print(f"{name}: {samples.person.nunique()} validation people, {len(samples)} photos "
              f"(resize={cfg.data.resize}, face_crop={cfg.data.face_crop}, augment={cfg.data.augment})")

        def predict(files: list[str], run=run) -> list[int]:
            return run_probs(run, files, args.tta, progress=False).argmax(1)

        # rendered photos are shared by the runs (same people when they share the split)
        people = hashlib.sha1("\n".join(samples["file"]).encode()).hexdigest()[:10]
        table = robustness_table(predict, samples["file"].tolist(), samples["label"].to_numpy(),
                                 out / f"people-{people}", framings)
        print(table.to_string(index=False, float_format=lambda v: f"{v:+.4f}" if v < 0 else f"{v:.4f}"))
        if "mask_f1_change" in table:
            worst = table.loc[table.mask_f1_change.idxmin()]
            print(f"worst mask-F1 change: {worst.mask_f1_change:+.4f} ({worst.framing}); "
                  f"spread of macro F1: {table.macro_f1.max() - table.macro_f1.min():.4f}\n")
        tables.append(table.assign(run=name))
    result = pd.concat(tables, ignore_index=True)
    (out / "robustness.json").write_text(json.dumps(result.to_dict(orient="records"), indent=2))
    print(f"rendered photos and robustness.json in {out}")
    return result


if __name__ == "__main__":
    main()
