"""Masks never seen in training: render the stand-in twice from a temporary copy of its kit, so that the training
people wear only some mask styles and the eval people only the others, train each recipe on both, and print the
mask F1 and the recall of worn / incorrect / not worn on the unseen styles, recipes side by side.

    python benchmarks/unseen_masks.py --kit ../shared/standin --configs configs/cpu_competition.yaml configs/cpu.yaml \\
        [--people 600] [--epochs 3] [--train-seeds 42 1 2] [--splits "surgical->other"] [--out unseen]

Splits (by mask template and colour in the kit's renders.csv):
  surgical -> other: trained on the surgical family (white, blue, green, sky-blue, black), evaluated on cloth (grey,
                     navy, pink), N95 and KN95;
  other -> surgical: the other way round.
Every person's five worn masks are five different styles of the family; the incorrectly worn one (nose or chin
out) is one of them too. The faces and mask placements are the kit's own; only the styles change. The kit's faces
are copied nowhere: the temporary kit links to them.

How a model trained on one family answers the other depends a lot on its training seed (mask F1 0.35 and 0.59 for
two seeds of one recipe): compare recipes over several --train-seeds, which prints each split's mean and spread.

--mask-from RECIPE [RECIPE ...] also scores every other recipe with its mask answer taken from these recipes' runs
of the same seed, their probabilities averaged (`facemask predict A B --weights 1 0 --mask-weights 0 1`).
--reuse-runs takes a run from --out's runs/ instead of training when its saved config is the one this command would
train (the recipe, data, seed and epochs).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, recall_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from facemask.config import load_config  # noqa: E402
from facemask.data.labels import MASK_NAMES, attribute_of  # noqa: E402
from facemask.errors import FacemaskError  # noqa: E402
from facemask.evaluation.metrics import macro_f1  # noqa: E402
from facemask.inference.predict import answers, run_probs  # noqa: E402
from facemask.runs import EVAL, Run  # noqa: E402
from facemask.training.trainer import fit  # noqa: E402

SURGICAL = [("surgical", ""), ("surgical_blue", ""), ("surgical_green", ""), ("surgical", "skyblue"),
            ("surgical", "black")]
OTHER = [("cloth", "gray"), ("cloth", "navy"), ("cloth", "pink"), ("N95", ""), ("KN95", "")]
SPLITS = {"surgical->other": (SURGICAL, OTHER), "other->surgical": (OTHER, SURGICAL)}


def styled_kit(kit: Path, out: Path, train_styles, eval_styles, eval_ids: set[str]) -> Path:
    """A kit whose renders.csv gives training people ``train_styles`` and eval people ``eval_styles``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("faces", "masks"):
        if not (out / name).exists():
            os.symlink((kit / name).resolve(), out / name)
    (out / "people.csv").write_bytes((kit / "people.csv").read_bytes())
    if (kit / "build.py").is_file():
        (out / "build.py").write_bytes((kit / "build.py").read_bytes())
    with open(kit / "renders.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if not row["template"]:
            continue  # no mask on the "normal" photo
        styles = eval_styles if row["id"] in eval_ids else train_styles
        if row["image"].startswith("mask"):
            style = styles[int(row["image"][4:]) - 1]  # mask1..mask5: the five styles of the family
        else:
            style = styles[int(hashlib.sha1(row["id"].encode()).hexdigest(), 16) % len(styles)]
        row["template"], row["color"] = style
    with open(out / "renders.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def eval_ids_of(kit: Path, people: int, eval_fraction: float, seed: int) -> set[str]:
    """The people build.py will put in eval/ for these arguments (it draws them with its own seeded RNG)."""
    import importlib.util
    import random

    spec = importlib.util.spec_from_file_location("standin_build", kit / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    everyone, _ = build.load_kit(kit)
    rng = random.Random(seed)
    if people:
        everyone = build.balanced_subset(everyone, people, rng)
    order = everyone[:]
    rng.shuffle(order)
    return {p["id"] for p in order[: round(len(order) * eval_fraction)]}


def render(kit: Path, out: Path, people: int, eval_fraction: float, seed: int) -> Path:
    if not (out / "eval_answers.csv").is_file():
        subprocess.run([sys.executable, str(kit / "build.py"), str(out), "--people", str(people), "--eval-fraction",
                        str(eval_fraction), "--seed", str(seed), "--kit", str(kit)], check=True)
    return out


def unseen_scores(labels: np.ndarray, predictions: np.ndarray) -> dict:
    truth, guess = attribute_of(labels, "mask"), attribute_of(predictions, "mask")
    recall = recall_score(truth, guess, labels=[0, 1, 2], average=None, zero_division=0)
    return {"mask_f1": float(f1_score(truth, guess, labels=[0, 1, 2], average="macro", zero_division=0)),
            **{f"recall_{name.replace(' ', '_')}": float(r) for name, r in zip(MASK_NAMES, recall)},
            "macro_f1": macro_f1(labels, predictions)}


def trained_run(cfg, runs: Path) -> Path | None:
    """The newest finished run under ``runs`` whose saved config is ``cfg`` (except where runs are written)."""
    wanted = cfg.to_dict()
    wanted["train"].pop("output_dir")
    for folder in sorted(runs.glob(f"{cfg.train.name}-*"), reverse=True):
        if (folder / EVAL).is_file():  # written when training ends: a run killed before that is never reused
            try:
                saved = Run.open(folder).config().to_dict()
            except FacemaskError:  # e.g. saved by a version with options this one does not know
                continue
            saved["train"].pop("output_dir")
            if saved == wanted:
                return folder
    return None


def with_mask_from(probs: dict[str, np.ndarray], sources: list[str]) -> dict[str, tuple[str, np.ndarray]]:
    """Each recipe not in ``sources`` answered with the mask of the top class of the sources' mean probabilities,
    and its own gender and age given that mask (`facemask predict` with --mask-weights): "cpu, mask from f_5" ->
    ("cpu", class ids (N,))."""
    weights, mask_weights = [1.0] + [0.0] * len(sources), [0.0] + [1.0] * len(sources)
    return {f"{stem}, mask from {'+'.join(sources)}":
            (stem, answers([probs[stem]] + [probs[m] for m in sources], "soft", weights, mask_weights))
            for stem in probs if stem not in sources}


COLUMNS = ["mask_f1", "recall_wear", "recall_incorrect", "recall_not_wear"]


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Each split and recipe's mean over its training seeds, with their standard deviation: "0.509 (0.136)"."""
    by_split = table.groupby(["split", "recipe"], sort=False)[COLUMNS]
    return by_split.mean().map(lambda v: f"{v:.3f}") + " (" + by_split.std().map(lambda v: f"{v:.3f}") + ")"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", required=True, help="the stand-in kit (../shared/standin)")
    parser.add_argument("--configs", nargs="+", default=[str(ROOT / "configs" / "cpu.yaml")], help="recipes")
    parser.add_argument("--people", type=int, default=600)
    parser.add_argument("--eval-fraction", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the rendering's seed (which people are eval people)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[42],
                        help="train each recipe once per seed (train.seed): one run's figure moves by several points")
    parser.add_argument("--tta", default=None)
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS), help="which splits to run")
    parser.add_argument("--out", help="work folder (default: temporary); datasets are reused when there")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="take a run from OUT/runs instead of training when its saved config is the same")
    parser.add_argument("--mask-from", metavar="RECIPE", nargs="+",
                        help="also score each other recipe with the mask answer from these (file stems), averaged")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every recipe, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    if any(override.startswith("train.seed=") for override in args.overrides):
        parser.error("give training seeds with --train-seeds, not train.seed=")
    stems = [Path(config).stem for config in args.configs]
    if args.mask_from is not None and (not set(args.mask_from) <= set(stems) or set(stems) <= set(args.mask_from)):
        parser.error(f"--mask-from {' '.join(args.mask_from)}: name some of the --configs by their stems "
                     f"({', '.join(stems)}), leaving at least one to take the mask answer")
    kit = Path(args.kit).resolve()
    work = Path(args.out or tempfile.mkdtemp(prefix="facemask-unseen-")).resolve()
    eval_ids = eval_ids_of(kit, args.people, args.eval_fraction, args.seed)
    rows = []
    for split in args.splits:
        train_styles, eval_styles = SPLITS[split]
        name = split.replace("->", "-to-")
        data = render(styled_kit(kit, work / f"kit-{name}", train_styles, eval_styles, eval_ids), work / name,
                      args.people, args.eval_fraction, args.seed)
        answers_of_eval = pd.read_csv(data / "eval_answers.csv", dtype={"ImageID": str})
        files = [str(data / "eval" / "images" / i) for i in answers_of_eval["ImageID"]]
        for seed in args.train_seeds:
            probs = {}
            for config in args.configs:
                cfg = load_config(config, [f"data.root={data / 'train'}", f"train.output_dir={work / 'runs'}",
                                           f"train.epochs={args.epochs}", f"data.cache_dir={work / 'cache'}",
                                           f"train.name={Path(config).stem}-{name}", "track.mlflow=false",
                                           "train.report=false", "train.progress=false", "data.val_fraction=0.1",
                                           f"train.seed={seed}", *args.overrides])
                run = (trained_run(cfg, work / "runs") if args.reuse_runs else None) or fit(cfg)
                probs[Path(config).stem] = run_probs(run, files, args.tta, progress=False), run
            recipes = [(stem, p.argmax(1), [run]) for stem, (p, run) in probs.items()]
            if args.mask_from is not None:
                combined = with_mask_from({stem: p for stem, (p, _) in probs.items()}, args.mask_from)
                recipes += [(name, guesses, [probs[stem][1]] + [probs[m][1] for m in args.mask_from])
                            for name, (stem, guesses) in combined.items()]
            for recipe, guesses, runs in recipes:
                scores = unseen_scores(answers_of_eval["ans"].to_numpy(), guesses)
                rows.append({"split": split, "recipe": recipe, "seed": seed, **scores,
                             "run": ";".join(str(run) for run in runs)})
                print(f"{split:>17}  {recipe:<18} seed {seed:<3} mask F1 {scores['mask_f1']:.4f}  recall "
                      f"worn {scores['recall_wear']:.3f}  incorrect {scores['recall_incorrect']:.3f}  not worn "
                      f"{scores['recall_not_wear']:.3f}  (macro F1 {scores['macro_f1']:.4f})", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.people} people ({1 - args.eval_fraction:.0%} train, {args.eval_fraction:.0%} eval), "
          f"{args.epochs} epochs; eval people wear only the styles their training never saw")
    print(table.drop(columns="run").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if len(args.train_seeds) > 1:
        print(f"\nmean (sd) over the {len(args.train_seeds)} training seeds:")
        print(seed_summary(table).to_string())
    summary = table.groupby("recipe", sort=False)[COLUMNS].mean()
    print(f"\nmean over the splits{' and seeds' if len(args.train_seeds) > 1 else ''} "
          "(targets: mask F1 >= 0.95, incorrect recall >= 0.9):")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    table.to_csv(work / "unseen_masks.csv", index=False)
    print(f"\n{work / 'unseen_masks.csv'}")
    return table


if __name__ == "__main__":
    main()
