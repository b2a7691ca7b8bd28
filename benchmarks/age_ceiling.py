"""What the age groups can reach: age-group F1 (and, with a run, 18-class macro F1) for an age estimator of a given
mean absolute error, on the real ages of a training folder, beside what runs reach on their validation people.

The three age groups are thresholds (30, 60) of the exact age, and most people of the stand-in are close to the
first one (median age 28), so an estimator's error of a few years flips many photos across it. This benchmark
draws estimated ages ``true age + e``, with e Laplace (or Gaussian) of the given mean absolute error (MAE) and
independent of the age (an assumption, and a kind one: real estimators err more on older faces), and prints the
age-group F1 that follows, averaged over --draws draws. With --runs, each run's validation people are scored
too: the run's own age answer (its age F1; the "equivalent MAE", at which a simulated estimator scores that age F1
on the same people; and for a ``model.head=multi_age`` run the MAE of its own exact-age estimate, the median of
its age distribution), and the 18-class macro F1 its own mask and gender answers would reach beside a simulated
age estimator of each MAE (MAE 0: the true age groups).

    python benchmarks/age_ceiling.py --data ../standin/train [--runs RUN ...] [--maes 0 1 2 3 4 5 6 8 10 12]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.config import Config  # noqa: E402
from facemask.data.labels import age_group, decode, encode  # noqa: E402
from facemask.data.layout import read_train  # noqa: E402
from facemask.data.loaders import load_pixels, make_loader  # noqa: E402
from facemask.data.transforms import build_transforms  # noqa: E402
from facemask.errors import FacemaskError  # noqa: E402
from facemask.evaluation.metrics import macro_f1  # noqa: E402
from facemask.models.heads import AgeHead  # noqa: E402
from facemask.runs import VAL_PREDICTIONS, Run  # noqa: E402

NOISES = ("laplace", "gauss")


def estimated_ages(ages: np.ndarray, mae: float, noise: str, rng: np.random.Generator) -> np.ndarray:
    """``ages`` plus an error of mean absolute value ``mae``: Laplace(0, mae), or Gaussian with sd mae * sqrt(pi/2)
    (whose mean absolute value is mae)."""
    if noise == "laplace":
        error = rng.laplace(0.0, mae, len(ages)) if mae > 0 else np.zeros(len(ages))
    else:
        error = rng.normal(0.0, mae * np.sqrt(np.pi / 2), len(ages))
    return ages + error


def simulated_age_f1(ages: np.ndarray, mae: float, noise: str, draws: int, seed: int,
                     thresholds=(30, 60)) -> float:
    """Mean over ``draws`` of the age-group macro F1 of an estimator with this MAE."""
    rng = np.random.default_rng(seed)
    truth = age_group(ages, thresholds)
    return float(np.mean([macro_f1(truth, age_group(estimated_ages(ages, mae, noise, rng), thresholds))
                          for _ in range(draws)]))


def simulated_macro_f1(labels: np.ndarray, preds: np.ndarray, ages: np.ndarray, mae: float, noise: str, draws: int,
                       seed: int, thresholds=(30, 60)) -> float:
    """Mean 18-class macro F1 when the mask and gender answers are ``preds``' and the age group comes from an
    estimator of this MAE."""
    rng = np.random.default_rng(seed)
    mask, gender, _ = decode(preds)
    scores = [macro_f1(labels, encode(mask, gender, age_group(estimated_ages(ages, mae, noise, rng), thresholds)))
              for _ in range(draws)]
    return float(np.mean(scores))


def equivalent_mae(maes: list[float], f1s: list[float], f1: float) -> float | None:
    """The MAE at which the simulated age F1 (falling with the MAE) equals ``f1``, by linear interpolation; None
    outside the grid. A simulated curve can rise a little between close MAEs (few draws): it is made
    non-increasing first, so that the interpolation is well defined."""
    order = np.argsort(maes)
    x, y = np.asarray(maes, float)[order], np.minimum.accumulate(np.asarray(f1s, float)[order])
    if not y[-1] <= f1 <= y[0]:
        return None
    return float(np.interp(f1, y[::-1], x[::-1]))


def exact_age_estimates(cfg: Config, model: torch.nn.Module, files: list[str]) -> np.ndarray | None:
    """The median of a ``multi_age`` run's age distribution for each file, decoded and transformed as the run's
    validation was (None for other heads)."""
    if not isinstance(model.head, AgeHead):
        return None
    pixels, problems = load_pixels(files, cfg, progress=False)
    if problems:
        raise FacemaskError(f"{problems[0][0]}: {problems[0][1]}")
    _, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    medians = []
    with torch.no_grad():
        for images, _ in make_loader(files, None, cfg, eval_tf, pixels):
            features = model.backbone((images.float() - model.mean) / model.std)
            distribution = model.head.age(features).softmax(1)
            medians.append((distribution.cumsum(1) < 0.5).sum(1).numpy())
    return np.concatenate(medians).astype(float)


def read_run(run: Run, ages_of: pd.Series) -> pd.DataFrame:
    """A run's validation predictions with each photo's true age (from --data's train.csv)."""
    path = run / VAL_PREDICTIONS
    if not path.is_file():
        raise FacemaskError(f"{path} not found (a finished run writes it)")
    val = pd.read_csv(path, dtype={"person": str})
    lacking = [c for c in ("file", "person", "label", "pred") if c not in val.columns]
    if lacking:
        raise FacemaskError(f"{path}: no column {lacking[0]!r}")
    missing = sorted(set(val["person"]) - set(ages_of.index))
    if missing:
        raise FacemaskError(f"{run.path}: its validation person {missing[0]} is not in --data's train.csv "
                            f"({len(missing)} in all)")
    gone = [f for f in val["file"] if not Path(f).is_file()]
    if gone:
        raise FacemaskError(f"{gone[0]}: not found (a validation photo of {run.path}; {len(gone)} in all)")
    return val.assign(age=val["person"].map(ages_of).astype(float))


def main(argv: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the training folder the runs were trained on (train.csv "
                        "with every person's age)")
    parser.add_argument("--runs", nargs="*", default=[], help="runs whose validation people to score (optional)")
    parser.add_argument("--maes", type=float, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 8, 10, 12],
                        help="the simulated estimators' mean absolute errors, in years")
    parser.add_argument("--noise", choices=NOISES, default="laplace", help="the simulated error's distribution")
    parser.add_argument("--draws", type=int, default=20, help="draws averaged per MAE")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.maes) < 0:
        parser.error(f"--maes {min(args.maes):g}: an error is at least 0 years")
    if args.draws < 1:
        parser.error(f"--draws {args.draws}: give at least 1")
    if not (Path(args.data) / "train.csv").is_file():
        parser.error(f"{Path(args.data) / 'train.csv'}: not found")
    try:  # every input checked, one line each, before any model runs
        photos = read_train(args.data)
        people = photos.groupby("person")["age"].first()
        runs = [Run.open(run) for run in args.runs]
        names = [run.name for run in runs]
        if len(set(names)) < len(names):
            raise FacemaskError(f"--runs: two runs named {next(n for n in names if names.count(n) > 1)}")
        vals = [read_run(run, people) for run in runs]
        loaded = [run.load_model("cpu") for run in runs]
    except FacemaskError as err:
        parser.error(str(err))

    ages = photos["age"].to_numpy(float)  # one row per photo, an independent error each
    maes = sorted(set(args.maes))
    f1s = [simulated_age_f1(ages, mae, args.noise, args.draws, args.seed) for mae in maes]
    curve = pd.DataFrame({"mae": maes, "age_f1": f1s})
    runs_table = []
    for run, val, (cfg, model) in zip(runs, vals, loaded):
        thresholds = tuple(cfg.data.age_thresholds)
        labels, preds, val_ages = val["label"].to_numpy(), val["pred"].to_numpy(), val["age"].to_numpy()
        own_age_f1 = macro_f1(decode(labels)[2], decode(preds)[2])
        val_f1s = [simulated_age_f1(val_ages, mae, args.noise, args.draws, args.seed, thresholds)
                   for mae in maes]  # the curve of the run's own validation people, to compare like with like
        row = {"run": run.name, "photos": len(val), "macro_f1": macro_f1(labels, preds), "age_f1": own_age_f1,
               "equivalent_mae": equivalent_mae(maes, val_f1s, own_age_f1)}
        try:
            estimates = exact_age_estimates(cfg, model, val["file"].tolist())
        except FacemaskError as err:
            parser.error(str(err))
        if estimates is not None:
            row["exact_age_mae"] = float(np.abs(estimates - val_ages).mean())
            # the age groups of that estimate, beside a simulated estimator of the same MAE on the same people
            row["exact_age_f1"] = macro_f1(age_group(val_ages, thresholds), age_group(estimates, thresholds))
            row["simulated_f1_at_that_mae"] = simulated_age_f1(val_ages, row["exact_age_mae"], args.noise,
                                                               args.draws, args.seed, thresholds)
        runs_table.append(row)
        curve[f"{run.name} age_f1"] = val_f1s
        curve[f"{run.name} macro_f1"] = [simulated_macro_f1(labels, preds, val_ages, mae, args.noise, args.draws,
                                                            args.seed, thresholds) for mae in maes]
    runs_frame = pd.DataFrame(runs_table)

    print(f"{args.data}: {len(people)} people, {len(ages)} photos, median age {np.median(people):.0f}; "
          f"simulated estimators: {args.noise} error, {args.draws} draws per MAE")
    print("age_f1: all photos of --data by the estimator's MAE (years); a run's columns, on its validation people: "
          "age_f1 likewise, and macro_f1 with its own mask and gender answers and the simulated age")
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if len(runs_frame):
        print("\nthe runs' own answers on their validation people:")
        print(runs_frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return curve, runs_frame


if __name__ == "__main__":
    main()
