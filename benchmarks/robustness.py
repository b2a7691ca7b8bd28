"""Robustness to framing: people no checkpoint choice has seen (an eval folder with its answers) re-rendered as tight
face crops, a face in a corner, 1:1 and 4:3 photos, 1/12 resolution, JPEG quality 12 and 15-degree rotations, scored
with each run's own prediction path; prints macro F1, mask F1 (worn / incorrect / not worn), the mask-F1 change from
the original framing, and whether each framing lies inside the run's training augmentation.

    python benchmarks/robustness.py RUN [RUN ...] --eval ../standin/eval --answers ../standin/eval_answers.csv \\
        [--tta flip] [--out robustness]

Without --eval it falls back to each run's validation people, and says so: those people chose the checkpoint.
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
from facemask.data.layout import read_eval  # noqa: E402
from facemask.evaluation.robustness import FRAMINGS, robustness_table  # noqa: E402
from facemask.inference.predict import run_probs, validation_samples  # noqa: E402
from facemask.runs import Run  # noqa: E402
from facemask.submission import read_csv_file  # noqa: E402


def eval_people(eval_dir: str, answers: str) -> pd.DataFrame:
    """file, label for every image of an eval folder, labelled from its answers file."""
    _, table = read_eval(eval_dir)
    truth = read_csv_file(answers, "answers file").set_index("ImageID")["ans"].astype(int)
    missing = set(table["image_id"]) - set(truth.index)
    if missing:
        raise SystemExit(f"{answers} has no answer for {len(missing)} images of {eval_dir}, e.g. {sorted(missing)[0]}")
    return table.assign(label=table["image_id"].map(truth).to_numpy())


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (or checkpoints)")
    parser.add_argument("--eval", help="an eval folder (info.csv + images/) of people the runs never saw")
    parser.add_argument("--answers", help="its answers (ImageID,ans), e.g. ../standin/eval_answers.csv")
    parser.add_argument("--tta", default=None, help="TTA views, as for facemask predict (e.g. flip)")
    parser.add_argument("--framings", default=",".join(FRAMINGS), help="comma-separated subset of the framings")
    parser.add_argument("--out", default=None, help="folder for the rendered photos and robustness.json "
                                                    "(default: a temporary folder)")
    args = parser.parse_args(argv)
    framings = [name.strip() for name in args.framings.split(",") if name.strip()]
    unknown = [name for name in framings if name not in FRAMINGS]
    if unknown:
        parser.error(f"unknown framing {unknown[0]!r} (known: {', '.join(FRAMINGS)})")
    if bool(args.eval) != bool(args.answers):
        parser.error("--eval and --answers go together")
    out = Path(args.out or tempfile.mkdtemp(prefix="facemask-robustness-"))
    shared = eval_people(args.eval, args.answers) if args.eval else None
    tables = []
    for run in args.runs:
        opened = Run.open(run)
        cfg = opened.config()
        if shared is not None:
            samples, who = shared, f"eval people of {args.eval}"
        else:
            samples, who = validation_samples(opened, cfg), "validation people (they chose the checkpoint)"
        print(f"{opened.name}: {len(samples)} photos of the {who} (resize={cfg.data.resize}, "
              f"face_crop={cfg.data.face_crop}, augment={cfg.data.augment})")

        def predict(files: list[str], run=run) -> list[int]:
            return run_probs(run, files, args.tta, progress=False).argmax(1)

        # rendered photos are shared by the runs (same people when they share the data)
        people = hashlib.sha1("\n".join(samples["file"]).encode()).hexdigest()[:10]
        table = robustness_table(predict, samples["file"].tolist(), samples["label"].to_numpy(),
                                 out / f"people-{people}", framings, cfg)
        with pd.option_context("display.max_colwidth", 90, "display.width", 250):
            print(table.to_string(index=False, float_format=lambda v: f"{v:+.4f}" if v < 0 else f"{v:.4f}"))
        if "mask_f1_change" in table:
            worst = table.loc[table.mask_f1_change.idxmin()]
            print(f"worst mask-F1 change: {worst.mask_f1_change:+.4f} ({worst.framing}); "
                  f"spread of macro F1: {table.macro_f1.max() - table.macro_f1.min():.4f}\n")
        tables.append(table.assign(run=opened.name, people=who))
    result = pd.concat(tables, ignore_index=True)
    (out / "robustness.json").write_text(json.dumps(result.to_dict(orient="records"), indent=2))
    print(f"rendered photos and robustness.json in {out}")
    return result


if __name__ == "__main__":
    main()
