"""The ``facemask`` command: one thin entry point over the package. Every user error is one line
``facemask: error: ...`` naming the file or option, exit status 2."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path

from facemask import __version__
from facemask.errors import FacemaskError, TrainingInterrupted

log = logging.getLogger("facemask")


def _print_metrics(title: str, metrics: dict) -> None:
    print(f"{title}: macro F1 {metrics['macro_f1']:.4f}  accuracy {metrics['accuracy']:.4f}  "
          f"mask F1 {metrics['mask_f1']:.4f}  gender F1 {metrics['gender_f1']:.4f}  age F1 {metrics['age_f1']:.4f}  "
          f"({metrics['count']} images)")


def cmd_demo_data(args: argparse.Namespace) -> None:
    from facemask.data.demo import make_demo_dataset

    if args.people < 2:
        raise FacemaskError(f"--people {args.people}: at least 2 people are needed")
    if not 0 <= args.eval_fraction < 1:
        raise FacemaskError(f"--eval-fraction {args.eval_fraction} must be between 0 and 1")
    out = make_demo_dataset(args.out, people=args.people, eval_fraction=args.eval_fraction, seed=args.seed)
    print(f"demo dataset written to {out} (train/, eval/, eval_answers.csv)")


def cmd_check_data(args: argparse.Namespace) -> int:
    from facemask.data.check import check_dataset

    report = check_dataset(args.data, progress=not args.quiet, faces=args.faces)
    print(report.text())
    return 1 if report.problems else 0


def cmd_train_detector(args: argparse.Namespace) -> None:
    from facemask.data.faces import train_masked_filter
    from facemask.data.layout import read_train

    out = Path(args.out)
    if out.is_dir():
        raise FacemaskError(f"--out {out} is a folder; name the filter file to write (e.g. masked.svm)")
    if not (math.isfinite(args.c) and args.c > 0):
        raise FacemaskError(f"--c {args.c} must be a positive number")
    counts = train_masked_filter(read_train(args.data), out, c=args.c, restyle=args.restyle,
                                 negatives=args.negatives, seed=args.seed, people=args.people)
    redrawn = (f" ({counts['redrawn']} of them with the mask redrawn; no mask found in {counts['no_mask_found']})"
               if args.restyle else "")
    if args.negatives:
        redrawn += f", and {counts['negatives']} images with no face (--negatives {args.negatives:g})"
    if args.people is not None:
        drawn = counts["people"] + counts["people_left_out"]
        redrawn += f"; {drawn} of the {counts['people_drawn_from']} people drawn (--people {args.people})"
    print(f"wrote {out}: a masked-face filter trained on {counts['photos']} photos of {counts['people']} people"
          f"{redrawn} (left out: {counts['people_left_out']} people with no bare photo in which dlib finds exactly "
          f"one face or no photo of its size, and {counts['photos_left_out']} photos not the size of their bare "
          f"photo); use it with facemask predict RUN PHOTOS --masked-faces {out}")


def cmd_train(args: argparse.Namespace) -> None:
    from facemask.config import load_config
    from facemask.training.trainer import fit

    overrides = list(args.overrides) + (["train.progress=false"] if args.quiet else [])
    if args.resume:
        if args.config or args.overrides or args.folds:
            raise FacemaskError("--resume continues a run with its saved config; drop -c, --folds and the overrides")
        run_dir = fit(resume=args.resume, trust_run_code=args.trust_run_code)
    elif args.folds is not None:
        from facemask.training.trainer import fit_folds

        parent = fit_folds(load_config(args.config, overrides), args.folds)
        summary = json.loads((parent / "kfold.json").read_text())
        print(f"{args.folds} folds: validation macro F1 {summary['mean_macro_f1']:.4f} ± {summary['std_macro_f1']:.4f} "
              f"(folds: {', '.join(f'{s:.4f}' for s in summary['fold_macro_f1'])}); out-of-fold macro F1 "
              f"{summary['oof']['macro_f1']:.4f} over {summary['oof']['count']} images")
        print(f"k-fold folder: {parent} (oof.csv, kfold.json, one run per fold)")
        return
    else:
        run_dir = fit(load_config(args.config, overrides))
    if int(os.environ.get("RANK", "0")) > 0:
        return
    summary = json.loads((run_dir / "eval.json").read_text())
    _print_metrics(f"best epoch {summary['epoch']} on validation", summary)
    print(f"run folder: {run_dir}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from facemask.config import load_config
    from facemask.training.sweep import sweep

    if args.trials < 1:
        raise FacemaskError(f"--trials {args.trials} must be at least 1")
    result = sweep(load_config(args.config, args.overrides), args.space, args.trials, args.study, args.storage,
                   args.seed, args.out)
    print(f"study {result['study']}: {result['trials']} trials ({result['completed']} completed, "
          f"{result['pruned']} pruned); best {result['best_value']:.4f} with {result['best_params']}")
    print(f"best config: {result['best_config']} (facemask train -c {result['best_config']})")


def cmd_eval(args: argparse.Namespace) -> None:
    from facemask.inference.predict import evaluate_run
    from facemask.runs import EVAL_DATA, EVAL_VAL, run_path
    from facemask.submission import save_json

    out = Path(args.out) if args.out else run_path(args.run) / (EVAL_VAL if args.data is None else EVAL_DATA)
    if out.is_dir():
        raise FacemaskError(f"--out {out} is a folder; name the JSON file to write")
    metrics = evaluate_run(args.run, args.data, args.checkpoint, args.device, progress=not args.quiet,
                           trust_run_code=args.trust_run_code)
    save_json(metrics, out)
    _print_metrics(f"{metrics['data']}", metrics)
    print(f"saved {out}")


def split_runs(items: list[str], checkpoint: str) -> tuple[list[str], list[str]]:
    """``facemask predict RUN [RUN ...] [PATH ...]``: the leading run folders (or checkpoint files), then the rest."""
    runs = []
    for item in items:
        path = Path(item)
        is_run = (path.is_dir() and (path / checkpoint).is_file()) or (path.is_file() and path.suffix == ".pt")
        if not is_run:
            break
        runs.append(item)
    if not runs:
        raise FacemaskError(f"{items[0]} is not a run folder (no {checkpoint} in it): name the run(s) first, e.g. "
                            "facemask predict runs/cpu-<time> photos/")
    return runs, items[len(runs):]


def cmd_predict(args: argparse.Namespace) -> None:
    runs, paths = split_runs(args.items, args.checkpoint)
    if args.data and paths:
        raise FacemaskError(f"give --data (a competition eval folder) or photos ({paths[0]} ...), not both")
    if args.data and args.masked_faces:
        raise FacemaskError("--masked-faces is for photos mode; --data frames each photo with the run's own detector, "
                            "as training did")
    if not args.data and not paths:
        raise FacemaskError("nothing to predict: give image files or folders after the run(s), or --data EVAL_FOLDER")
    if args.data:
        predict_competition(args, runs)
    else:
        predict_photo_files(args, runs, paths)


def predict_competition(args: argparse.Namespace, runs: list[str]) -> None:
    from facemask.inference.predict import predict_folder, save_probs
    from facemask.submission import write_submission

    out = Path(args.out or "submission.csv")
    for path, option in ((out, "--out"), (Path(args.save_probs) if args.save_probs else None, "--save-probs")):
        if path is not None and path.is_dir():
            raise FacemaskError(f"{option} {path} is a folder; name the CSV file to write")
    info, scores, labels = predict_folder(runs, args.data, tta=args.tta, engine=args.engine, vote=args.vote,
                                  weights=args.weights, mask_weights=args.mask_weights,
                                  checkpoint=args.checkpoint, device=args.device,
                                  progress=not args.quiet, precision=args.precision,
                                  trust_run_code=args.trust_run_code)
    if args.save_probs:
        save_probs(info["ImageID"], scores / scores.sum(1, keepdims=True), args.save_probs)
        print(f"wrote {args.save_probs}")
    write_submission(info, labels, out)
    print(f"wrote {out} ({len(info)} rows, {len(runs)} run(s), vote {args.vote}, TTA {args.tta or 'none'}, "
          f"engine {args.engine})")


def predict_photo_files(args: argparse.Namespace, runs: list[str], paths: list[str]) -> None:
    from facemask.inference.api import load
    from facemask.inference.photos import predict_photos

    if args.save_probs:
        raise FacemaskError("--save-probs is for --data (competition mode); photos mode writes the probabilities")
    out = Path(args.out or "faces.csv")
    model = load(runs, device=args.device, engine=args.engine, tta=args.tta, checkpoint=args.checkpoint,
                 weights=args.weights, mask_weights=args.mask_weights, vote=args.vote, precision=args.precision,
                 min_face=args.min_face, face_threshold=args.face_threshold, no_face=args.no_face,
                 trust_run_code=args.trust_run_code, masked_faces=args.masked_faces)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"  {done}/{total} photos", file=sys.stderr)
    summary = predict_photos(model, paths, out, workers=args.workers, progress=progress)
    for path, why in summary["skipped_files"][:5]:
        print(f"skipped {path}: {why}")
    if summary["skipped"] > 5:
        print(f"skipped {summary['skipped'] - 5} more files (listed in {out})")
    engines = ", ".join(sorted(set(model.info["engines"])))
    print(f"wrote {out}: {summary['faces']} faces in {summary['photos']} photos ({summary['no_face']} with no face "
          f"found, {summary['errors']} unreadable, {summary['skipped']} files skipped); {len(runs)} run(s), "
          f"engine {engines}, TTA {args.tta or 'none'}")


def cmd_ensemble_search(args: argparse.Namespace) -> None:
    from facemask.inference.ensemble import ensemble_search
    from facemask.submission import save_json

    if Path(args.out).is_dir():
        raise FacemaskError(f"--out {args.out} is a folder; name the JSON file to write")
    result = ensemble_search(args.runs, args.tta, args.engine, args.vote, args.device, progress=not args.quiet,
                             checkpoint=args.checkpoint, trust_run_code=args.trust_run_code)
    for run, f1 in zip(result["runs"], result["single_macro_f1"]):
        print(f"{run}: validation macro F1 {f1:.4f}")
    print(f"equal weights: {result['equal_weights_macro_f1']:.4f}")
    print(f"best weights {' '.join(f'{w:.2f}' for w in result['weights'])}: {result['ensemble_macro_f1']:.4f} "
          f"(in-sample gain over the best single run {result['gain_over_best_single']:+.4f}, {result['images']} "
          f"images: weights chosen and scored on the same people)")
    print(f"cross-validated gain {result['cv_gain']:+.4f} (weights and the best single run chosen on half of the "
          f"{result['people']} people, scored on the other half, both ways: "
          f"{', '.join(f'{g:+.4f}' for g in result['cv_gains'])})")
    save_json(result, args.out)
    print(f"saved {args.out}; predict with --weights {' '.join(f'{w:.2f}' for w in result['weights'])}")


def cmd_export(args: argparse.Namespace) -> None:
    from facemask.inference.export import export_onnx

    out = export_onnx(args.run, args.out, args.checkpoint)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def cmd_report(args: argparse.Namespace) -> None:
    from facemask.evaluation.report import make_report

    print(f"wrote {make_report(args.run, trust_run_code=args.trust_run_code)}")


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
    from facemask.submission import read_csv_file, validate_submission

    info = read_csv_file(args.info, "info file", ("ImageID",))
    problems = validate_submission(read_csv_file(args.submission, "submission", ()), info, args.submission)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.submission}: valid ({len(info)} rows, in info.csv's order)")
    return 1 if problems else 0


def cmd_score(args: argparse.Namespace) -> None:
    from facemask.submission import score_submission

    metrics = score_submission(args.submission, args.answers)
    _print_metrics(str(args.submission), metrics)


def cmd_serve(args: argparse.Namespace) -> None:
    from facemask.serve.app import serve

    serve(args)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with every option's default, and descriptions kept as written."""


def _parser(sub, name: str, help: str, parents=(), description: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description or help, parents=[_VERBOSE, *parents],
                          formatter_class=_Formatter)


_VERBOSE = argparse.ArgumentParser(add_help=False)
_VERBOSE.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="debug logging (also accepted before the subcommand)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facemask", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"facemask {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _parser(sub, "demo-data", "write a synthetic dataset in the competition layout")
    p.add_argument("out", help="output folder (gets train/, eval/, eval_answers.csv)")
    p.add_argument("--people", type=int, default=300, help="people to draw (seven photos each)")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="share of people written to eval/")
    p.add_argument("--seed", type=int, default=0, help="the same seed always gives the same pixels")
    p.set_defaults(func=cmd_demo_data)

    p = _parser(sub, "check-data", "validate a dataset up front and list every problem with its file")
    p.add_argument("data", help="a train folder, an eval folder, or a folder with train/ and/or eval/")
    p.add_argument("--faces", metavar="DETECTOR", default="",
                   help="also measure how often the face-crop detector (e.g. hog) finds a face in the training photos")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_check_data)

    p = _parser(sub, "train-detector", "train a masked-face filter for photos mode on a training set's own photos",
                description="""\
facemask train-detector TRAIN_FOLDER --out masked.svm
    dlib's bare-face detector finds each person's bare photo (normal); that box labels the person's masked
    photos, and a HOG filter is trained on them (half of them, --restyle 0.5, with the mask redrawn in another
    shape and colour, so that it learns more than the photos' own mask styles; --restyle 0: the photos alone).
    Give it to photos mode (predict, serve, load) with --masked-faces: it scans beside the bare-face filter, and
    finds the masked faces that one misses.""")
    p.add_argument("data", help="a train folder (train.csv + images/)")
    p.add_argument("--out", required=True, help="the filter file to write (dlib's format)")
    p.add_argument("--c", type=float, default=5.0, help="the SVM's C: higher fits the training photos closer")
    p.add_argument("--restyle", type=float, default=0.5, metavar="SHARE",
                   help="the share of masked photos trained on with the mask redrawn in another shape and colour "
                        "(mask_restyle's drawing), so that the filter finds mask styles the photos lack (default "
                        "0.5; 0: the photos alone)")
    p.add_argument("--negatives", type=float, default=1.0, metavar="N",
                   help="also train on N images with no face per person (mosaics of pieces of the photos), so that "
                        "the filter fires less on clutter (default 1; 0: the photos alone)")
    p.add_argument("--people", type=int, metavar="N", help="train on N people drawn at random (with --seed) "
                   "instead of all: dlib keeps about 1.9 MB per masked photo in memory")
    p.add_argument("--seed", type=int, default=0,
                   help="the seed of the redrawn masks, of --negatives' mosaics and of --people's draw")
    p.set_defaults(func=cmd_train_detector)

    p = _parser(sub, "train", "train a model: facemask train -c configs/x.yaml optim.lr=3e-4 ...")
    p.add_argument("-c", "--config", help="YAML config (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=data/train train.epochs=3")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder where it stopped")
    p.add_argument("--folds", type=int, metavar="K", help="train K runs, one per person-level fold, with OOF output")
    p.add_argument("--trust-run-code", action="store_true",
                   help="--resume: let the run's saved config import its face detector (data.face_crop=module:f)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = _parser(sub, "sweep", "Optuna study over a search space; each trial a tracked run")
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
    common.add_argument("--device", default="auto", help="auto (CUDA if there is one), cpu, cuda or cuda:N")
    common.add_argument("--trust-run-code", action="store_true",
                        help="let a run's saved config import its face detector (data.face_crop=module:factory); "
                             "only for runs you trust")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = _parser(sub, "eval", "metrics of a run on its validation people or a dataset", [common])
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="a train-layout folder to evaluate on instead (every image)")
    p.add_argument("--out", help="JSON output (default: RUN/eval-val.json or RUN/eval-data.json)")
    p.set_defaults(func=cmd_eval)

    inference = argparse.ArgumentParser(add_help=False)
    inference.add_argument("--tta", help="test-time views averaged with the original, e.g. flip,scale:1.15,zoom:0.9")
    inference.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx"],
                           help="auto: ONNX Runtime when the run has an up-to-date `facemask export`, else PyTorch")
    inference.add_argument("--vote", default="soft", choices=["soft", "hard"],
                           help="soft: weighted mean of probabilities; hard: weighted majority, ties by probability")
    inference.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                           help="bf16 autocast for the PyTorch engine (about 2x faster on CPUs with AVX-512 BF16)")

    photos = argparse.ArgumentParser(add_help=False)
    photos.add_argument("--min-face", type=int, default=40, help="photos: smallest face width (pixels) to look for")
    photos.add_argument("--face-threshold", type=float, default=None,
                        help="photos: face detector score threshold (default: the detector's own, -0.8 for hog)")
    photos.add_argument("--no-face", default="report", choices=["report", "fallback"],
                        help="photos with no face found: a row saying so, or the answer for the crop training "
                             "used when its detector found none")
    photos.add_argument("--masked-faces", metavar="FILE", help="photos: a masked-face filter (facemask "
                        "train-detector) scanned beside hog's bare-face one")
    photos.add_argument("--workers", type=int, default=0, help="photos: decoding + detection processes (0: one "
                        "per core)")

    p = _parser(sub, "predict", "answer photos (every face) or write a competition submission", [common, inference,
                photos], description="""\
facemask predict RUN [RUN ...] PATH [PATH ...] --out faces.csv|faces.json
    image files and folders (recursive; jpg, jpeg, png, webp, bmp): one row per face with its box, the three
    answers, the class and the probabilities; other files are listed as skipped
facemask predict RUN [RUN ...] --data EVAL_FOLDER --out submission.csv
    the competition's eval layout (info.csv + images/): the submission, ImageID,ans (class ids 0..17)
Several runs make an ensemble (--vote, --weights, --mask-weights).""")
    p.add_argument("items", nargs="+", metavar="RUN_OR_PATH", help="run folder(s), then image files or folders")
    p.add_argument("--data", help="competition mode: eval folder with info.csv and images/")
    p.add_argument("--out", help="default: faces.csv (photos) or submission.csv (--data)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    p.add_argument("--mask-weights", type=float, nargs="+", help="soft vote: the mask answer's own weight per run "
                   "(gender and age keep --weights), e.g. the mask from a model.freeze run")
    p.add_argument("--save-probs", metavar="CSV", help="--data: also write per-image class probabilities")
    p.set_defaults(func=cmd_predict)

    p = _parser(sub, "ensemble-search", "pick ensemble weights on the runs' shared validation images",
                [common, inference])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders trained on the same people (or k-fold folders)")
    p.add_argument("--out", default="ensemble.json", help="where to save the weights and the figures")
    p.set_defaults(func=cmd_ensemble_search)

    p = _parser(sub, "export", "write RUN/model.onnx (dynamic batch) and its preprocessing JSON")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="default: RUN/model.onnx")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file inside the run folder")
    p.set_defaults(func=cmd_export)

    p = _parser(sub, "report", "write RUN/report.html (+ PNGs): curves, F1, confusion matrices, errors")
    p.add_argument("run", help="run folder")
    p.add_argument("--trust-run-code", action="store_true",
                   help="let the run's saved config import its face detector to draw the error grids")
    p.set_defaults(func=cmd_report)

    p = _parser(sub, "runs", "table of tracked runs, best validation macro F1 first; --diff A B")
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default="facemask", help="MLflow experiment")
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="config keys that differ between two runs")
    p.set_defaults(func=cmd_runs)

    p = _parser(sub, "validate", "check a submission against info.csv (rows, order, ids, labels)")
    p.add_argument("submission", help="ImageID,ans CSV to check")
    p.add_argument("--info", required=True, help="eval/info.csv")
    p.set_defaults(func=cmd_validate)

    p = _parser(sub, "score", "score a submission against an answers file")
    p.add_argument("submission", help="ImageID,ans CSV to score")
    p.add_argument("answers", help="ImageID,ans with the true classes")
    p.set_defaults(func=cmd_score)

    p = _parser(sub, "serve", "serve runs over HTTP: POST /predict, GET /health, /info, / (a page to try it)",
                [inference])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); several make an ensemble")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; any other than loopback needs --token "
                   "or --insecure")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed on start)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every request but /health "
                   "(default: $FACEMASK_TOKEN when set)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    p.add_argument("--max-bytes", default="10MB", help="largest upload accepted (413 above), e.g. 10MB, 500KB")
    p.add_argument("--max-megapixels", type=float, default=40.0, help="largest photo decoded (413 above): a "
                   "small upload can claim many pixels, and each costs memory")
    p.add_argument("--max-batch", type=int, default=16, help="largest micro-batch of concurrent requests")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a request waits for a batch to fill")
    p.add_argument("--export", action="store_true", help="export the runs to ONNX first (then --engine auto uses it)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    p.add_argument("--mask-weights", type=float, nargs="+", help="soft vote: the mask answer's own weight per run "
                   "(gender and age keep --weights), e.g. the mask from a model.freeze run")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file inside the run folder")
    p.add_argument("--device", default="auto", help="auto (CUDA if there is one), cpu, cuda or cuda:N")
    p.add_argument("--min-face", type=int, default=40, help="smallest face width (pixels) to look for")
    p.add_argument("--face-threshold", type=float, default=None, help="face detector score threshold")
    p.add_argument("--masked-faces", metavar="FILE", help="a masked-face filter (facemask train-detector) scanned "
                   "beside hog's bare-face one")
    p.add_argument("--no-face", default="report", choices=["report", "fallback"],
                   help="photos with no face found: an entry saying so, or the answer for the fallback crop")
    p.add_argument("--trust-run-code", action="store_true",
                   help="let a run's saved config import its face detector (data.face_crop=module:factory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log")
    p.set_defaults(func=cmd_serve)
    return parser


def _quiet_libraries() -> None:
    """Keep third-party chatter (matplotlib, onnxscript, the ONNX exporter, MLflow) out of normal output."""
    for name in ("matplotlib", "PIL", "onnxscript", "onnx_ir", "torch.onnx", "torch.export", "mlflow", "alembic",
                 "urllib3", "httpx", "multipart"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*onnxscript.*")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: only rank 0 talks
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    log.setLevel(level)
    if level > logging.DEBUG:
        _quiet_libraries()
    try:
        code = args.func(args)
    except TrainingInterrupted as err:
        print(f"facemask: {err}", file=sys.stderr)
        return 128 + err.signum
    except FacemaskError as err:
        print(f"facemask: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facemask: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
