"""The ``facemask`` command: one thin entry point over the package."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from facemask.errors import FacemaskError, TrainingInterrupted

log = logging.getLogger("facemask")


def _print_metrics(title: str, metrics: dict) -> None:
    print(f"{title}: macro F1 {metrics['macro_f1']:.4f}  accuracy {metrics['accuracy']:.4f}  "
          f"mask F1 {metrics['mask_f1']:.4f}  gender F1 {metrics['gender_f1']:.4f}  age F1 {metrics['age_f1']:.4f}  "
          f"({metrics['count']} images)")


def cmd_demo_data(args: argparse.Namespace) -> None:
    from facemask.data.demo import make_demo_dataset

    out = make_demo_dataset(args.out, people=args.people, eval_fraction=args.eval_fraction, seed=args.seed)
    print(f"demo dataset written to {out} (train/, eval/, eval_answers.csv)")


def cmd_check_data(args: argparse.Namespace) -> int:
    from facemask.data.check import check_dataset

    report = check_dataset(args.data, progress=not args.quiet, faces=args.faces)
    print(report.text())
    return 1 if report.problems else 0


def cmd_train(args: argparse.Namespace) -> None:
    from facemask.config import load_config
    from facemask.training.trainer import fit

    if args.resume:
        if args.config or args.overrides:
            raise FacemaskError("--resume continues a run with its saved config; drop -c and the overrides")
        run_dir = fit(resume=args.resume)
    elif args.folds:
        from facemask.training.trainer import fit_folds

        parent = fit_folds(load_config(args.config, args.overrides), args.folds)
        summary = json.loads((parent / "kfold.json").read_text())
        print(f"{args.folds} folds: validation macro F1 {summary['mean_macro_f1']:.4f} ± {summary['std_macro_f1']:.4f} "
              f"(folds: {', '.join(f'{s:.4f}' for s in summary['fold_macro_f1'])}); out-of-fold macro F1 "
              f"{summary['oof']['macro_f1']:.4f} over {summary['oof']['count']} images")
        print(f"k-fold folder: {parent} (oof.csv, kfold.json, one run per fold)")
        return
    else:
        run_dir = fit(load_config(args.config, args.overrides))
    if int(os.environ.get("RANK", "0")) > 0:
        return
    summary = json.loads((run_dir / "eval.json").read_text())
    _print_metrics(f"best epoch {summary['epoch']} on validation", summary)
    print(f"run folder: {run_dir}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from facemask.config import load_config
    from facemask.training.sweep import sweep

    result = sweep(load_config(args.config, args.overrides), args.space, args.trials, args.study, args.storage,
                   args.seed, args.out)
    print(f"study {result['study']}: {result['trials']} trials ({result['completed']} completed, "
          f"{result['pruned']} pruned); best {result['best_value']:.4f} with {result['best_params']}")
    print(f"best config: {result['best_config']} (facemask train -c {result['best_config']})")


def cmd_eval(args: argparse.Namespace) -> None:
    from facemask.inference.predict import evaluate_run, save_json

    metrics = evaluate_run(args.run, args.data, args.checkpoint, args.device, progress=not args.quiet)
    default = "eval-val.json" if args.data is None else "eval-data.json"
    out = Path(args.out) if args.out else Path(args.run) / default
    save_json(metrics, out)
    _print_metrics(f"{metrics['data']}", metrics)
    print(f"saved {out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from facemask.inference.predict import predict_folder, save_probs, write_submission

    info, scores = predict_folder(args.runs, args.data, args.tta, args.engine, args.vote, args.weights,
                                  args.checkpoint, args.device, not args.quiet, args.precision)
    if args.save_probs:
        save_probs(info["ImageID"], scores / scores.sum(1, keepdims=True), args.save_probs)
        print(f"wrote {args.save_probs}")
    write_submission(info, scores.argmax(1), args.out)
    print(f"wrote {args.out} ({len(info)} rows, {len(args.runs)} run(s), vote {args.vote}, "
          f"TTA {args.tta or 'none'}, engine {args.engine})")


def cmd_ensemble_search(args: argparse.Namespace) -> None:
    from facemask.inference.ensemble import ensemble_search
    from facemask.inference.predict import save_json

    result = ensemble_search(args.runs, args.tta, args.engine, args.vote, args.device, progress=not args.quiet)
    for run, f1 in zip(result["runs"], result["single_macro_f1"]):
        print(f"{run}: validation macro F1 {f1:.4f}")
    print(f"equal weights: {result['equal_weights_macro_f1']:.4f}")
    print(f"best weights {' '.join(f'{w:.2f}' for w in result['weights'])}: {result['ensemble_macro_f1']:.4f} "
          f"(gain over the best single run {result['gain_over_best_single']:+.4f}, {result['images']} images)")
    save_json(result, args.out)
    print(f"saved {args.out}; predict with --weights {' '.join(f'{w:.2f}' for w in result['weights'])}")


def cmd_export(args: argparse.Namespace) -> None:
    from facemask.inference.export import export_onnx

    out = export_onnx(args.run, args.out, args.checkpoint)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def cmd_report(args: argparse.Namespace) -> None:
    from facemask.evaluation.report import make_report

    print(f"wrote {make_report(args.run)}")


def cmd_runs(args: argparse.Namespace) -> None:
    import pandas as pd

    from facemask.tracking import diff_runs, list_runs

    if args.diff:
        changed = diff_runs(*args.diff, uri=args.uri, experiment=args.experiment)
        if not changed:
            print("the two runs have the same config")
        for key, a, b in changed:
            print(f"{key}: {a} -> {b}")
        return
    table = list_runs(args.uri, args.experiment)
    if table.empty:
        print("no runs yet")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))


def cmd_validate(args: argparse.Namespace) -> int:
    from facemask.inference.predict import read_csv_file, validate_submission

    problems = validate_submission(read_csv_file(args.submission), read_csv_file(args.info), args.submission)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.submission}: valid ({len(read_csv_file(args.info))} rows, in info.csv's order)")
    return 1 if problems else 0


def cmd_score(args: argparse.Namespace) -> None:
    from facemask.inference.predict import score_submission

    metrics = score_submission(args.submission, args.answers)
    _print_metrics(str(args.submission), metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facemask", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a synthetic dataset in the competition layout")
    p.add_argument("out", help="output folder (gets train/, eval/, eval_answers.csv)")
    p.add_argument("--people", type=int, default=300)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("check-data", help="validate a dataset up front and list every problem with its file")
    p.add_argument("data", help="a train folder, an eval folder, or a folder with train/ and/or eval/")
    p.add_argument("--faces", metavar="DETECTOR", default="",
                   help="also measure how often the face-crop detector (e.g. hog) finds a face in the training photos")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("train", help="train a model: facemask train -c configs/x.yaml optim.lr=3e-4 ...")
    p.add_argument("-c", "--config", help="YAML config (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=data/train train.epochs=3")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder where it stopped")
    p.add_argument("--folds", type=int, metavar="K", help="train K runs, one per person-level fold, with OOF output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="Optuna study over a search space; each trial a tracked run")
    p.add_argument("-c", "--config", help="base YAML config")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the base config")
    p.add_argument("--space", required=True, help="YAML: config.key: {type: float|int|categorical, ...}")
    p.add_argument("--trials", type=int, default=10, help="trials to add in this invocation")
    p.add_argument("--study", default="facemask-sweep", help="study name (re-running continues it)")
    p.add_argument("--storage", help="default sqlite:///<study>.db; journal:PATH, or a PostgreSQL/MySQL URL")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    p.add_argument("--out", help="best config YAML (default <study>-best.yaml)")
    p.set_defaults(func=cmd_sweep)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", default="best.pt", help="checkpoint file inside the run folder")
    common.add_argument("--device", default="cpu")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", parents=[common], help="metrics of a run on its validation people or a dataset")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="a train-layout folder to evaluate on instead (every image)")
    p.add_argument("--out", help="JSON output (default: RUN/eval-val.json or RUN/eval-data.json)")
    p.set_defaults(func=cmd_eval)

    inference = argparse.ArgumentParser(add_help=False)
    inference.add_argument("--tta", help="test-time views averaged with the original, e.g. flip,scale:1.15,zoom:0.9")
    inference.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                           help="onnx runs RUN/model.onnx (from facemask export) with ONNX Runtime")
    inference.add_argument("--vote", default="soft", choices=["soft", "hard"],
                           help="soft: weighted mean of probabilities; hard: weighted majority, ties by probability")
    inference.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                           help="bf16 autocast for the PyTorch engine (about 2x faster on CPUs with AVX-512 BF16)")

    p = sub.add_parser("predict", parents=[common, inference], help="write a submission (one run or an ensemble)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); several make an ensemble")
    p.add_argument("--data", required=True, help="eval folder with info.csv and images/")
    p.add_argument("--out", default="submission.csv")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    p.add_argument("--save-probs", metavar="CSV", help="also write per-image class probabilities")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ensemble-search", parents=[common, inference],
                       help="pick ensemble weights on the runs' shared validation images")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default="ensemble.json")
    p.set_defaults(func=cmd_ensemble_search)

    p = sub.add_parser("export", help="write RUN/model.onnx (dynamic batch) and its preprocessing JSON")
    p.add_argument("run")
    p.add_argument("--out", help="default: RUN/model.onnx")
    p.add_argument("--checkpoint", default="best.pt")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write RUN/report.html (+ PNGs): curves, F1, confusion matrices, errors")
    p.add_argument("run")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="table of tracked runs, best validation macro F1 first; --diff A B")
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default="facemask")
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="config keys that differ between two runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("validate", help="check a submission against info.csv (rows, order, ids, labels)")
    p.add_argument("submission")
    p.add_argument("--info", required=True, help="eval/info.csv")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("score", help="score a submission against an answers file")
    p.add_argument("submission")
    p.add_argument("answers")
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: only rank 0 talks
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    try:
        code = args.func(args)
    except TrainingInterrupted as err:
        print(f"facemask: {err}", file=sys.stderr)
        return 128 + err.signum
    except FacemaskError as err:
        print(f"facemask: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facemask: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
