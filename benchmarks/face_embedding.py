"""Gender and age from a face-recognition embedding, beside a run's own: does a second, independent view of the
face lift macro F1? (Issue 17's lever: a face-recognition embedding such as dlib's CC0 ResNet.)

For each photo, dlib's face-recognition ResNet (the CC0 model of the `face-recognition-models` package) embeds the
face found by facemask's HOG detector (the fallback box when none is found) into 128 numbers. Two logistic
regressions on those embeddings answer gender and age group; they are fitted on the training photos of the
people *outside* the run's validation people, so that the run and the regressions have learnt from the same
people. The combined answer is the top class of p_run(class) x p_emb(gender)^wg x p_emb(age)^wa (the embedding says
nothing of the mask: only the run's probabilities weigh the three mask states). It is printed, beside the run
alone, on the eval people, all in one run: with the regressions' C and the weights that score best on the run's
validation people (from --cs and --grid; the run's answers there with the same --tta as on the eval photos), and
with fixed ones (--c, --weights).

    pip install face-recognition-models      # dlib's models (about 100 MB); not a facemask dependency
    python benchmarks/face_embedding.py --train ../standin/train --eval ../standin/eval --runs RUN [RUN ...] \
        [--tta flip] [--weights 0.5 0.5]
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import group_people  # noqa: E402
from _common import eval_labels  # noqa: E402

from facemask.data.faces import HogDetector  # noqa: E402
from facemask.data.labels import SHAPE, decode  # noqa: E402
from facemask.data.layout import read_train, scan_eval  # noqa: E402
from facemask.errors import FacemaskError  # noqa: E402
from facemask.evaluation.metrics import classification_metrics, macro_f1  # noqa: E402
from facemask.inference.predict import run_probs  # noqa: E402
from facemask.inference.tta import parse_tta  # noqa: E402
from facemask.io import first_line  # noqa: E402
from facemask.runs import VAL_PREDICTIONS, Run  # noqa: E402


def map_in_workers(function, files: list[str], workers: int) -> np.ndarray:
    """``function(chunk)`` -> (len(chunk), D) over ``files`` split into ``workers`` interleaved chunks, one process
    each, joined back in the files' order."""
    chunks = [files[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(function, chunks))
    out = np.zeros((len(files), parts[0].shape[1]))
    for i, part in enumerate(parts):
        out[i::workers] = part
    return out


def _dlib_chunk(files: list[str]) -> np.ndarray:
    # the grouping benchmark's embedding (face box, landmarks, ResNet)
    return group_people.dlib_embeddings(files) if files else np.zeros((0, 128))


def dlib_embeddings(files: list[str], workers: int) -> np.ndarray:
    """dlib's 128-number face-recognition embedding of each file, in ``workers`` processes (dlib runs on one core)."""
    if importlib.util.find_spec("face_recognition_models") is None:
        raise FacemaskError("--embedding dlib: pip install face-recognition-models (dlib's face-recognition model)")
    try:
        return map_in_workers(_dlib_chunk, files, workers)
    except Exception as err:  # a photo dlib cannot read, or a worker lost: one line, not a traceback
        raise FacemaskError(f"--embedding dlib failed: {first_line(err)}") from err


def dlib_version() -> str:
    """What identifies the dlib embedding's output in the cache key: dlib's version and the face box's settings
    (group_people.dlib_embeddings: HOG, margin 1.0, fallback 0.52)."""
    import dlib

    return f"dlib{dlib.__version__}-{HogDetector().cache_id}-margin1.0-fallback0.52"


EMBEDDINGS = {"dlib": dlib_embeddings}  # name -> (files, workers) -> (N, D) array
VERSIONS = {"dlib": dlib_version}  # name -> () -> what changes when the embedding's output would


def embed(files: list[str], name: str, workers: int, cache_dir: Path | None) -> tuple[np.ndarray, str]:
    """(the embeddings of ``files``, "computed in N s" or "read from the cache"). They are kept in ``cache_dir``:
    an .npz named after the embedding's version and the files (path, size, modification time), read with
    allow_pickle=False, so that a second run of the benchmark does not compute them again."""
    stats = [f"{f}:{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}" for f in files]
    key = hashlib.sha1("\n".join([name, VERSIONS.get(name, lambda: "")(), *stats]).encode()).hexdigest()[:16]
    path = cache_dir / f"embeddings-{name}-{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            vectors = stored["embeddings"]
        if len(vectors) == len(files):
            return vectors, "read from the cache"
    start = time.perf_counter()
    vectors = EMBEDDINGS[name](files, workers)
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), embeddings=vectors)
        os.replace(path.with_suffix(".tmp.npz"), path)
    return vectors, f"computed in {seconds:.0f} s"


def fit_attributes(vectors: np.ndarray, labels: np.ndarray, c: float) -> tuple:
    """(gender model, age model): standardised logistic regressions, each class weighted by its inverse
    frequency (macro F1 counts the rare groups as much as the common ones)."""
    _, gender, age = decode(labels)
    models = []
    for target in (gender, age):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
        models.append(model.fit(vectors, target))
    return tuple(models)


def with_embedding(p_run: np.ndarray, p_gender: np.ndarray, p_age: np.ndarray, w_gender: float,
                   w_age: float) -> np.ndarray:
    """p_run(class) x p_gender(its gender)^w_gender x p_age(its age group)^w_age, (N, 18)."""
    grid = p_run.reshape(-1, *SHAPE) * (p_gender[:, None, :, None] ** w_gender) * (p_age[:, None, None, :] ** w_age)
    return grid.reshape(len(p_run), -1)


def _scores(labels: np.ndarray, predictions: np.ndarray) -> dict:
    metrics = classification_metrics(labels, predictions)
    return {k: metrics[k] for k in ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1")}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="the training folder the runs were trained on")
    parser.add_argument("--eval", required=True, help="eval folder (info.csv, images/)")
    parser.add_argument("--answers", help="the eval answers (default: eval_answers.csv beside the eval folder)")
    parser.add_argument("--runs", nargs="+", required=True, help="runs trained on --train")
    parser.add_argument("--tta", default=None, help="the runs' test-time augmentation, e.g. flip")
    parser.add_argument("--embedding", choices=sorted(EMBEDDINGS), default="dlib")
    parser.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="the regressions' inverse regularisations tried on the validation people")
    parser.add_argument("--grid", type=float, nargs="+", default=[0, 0.25, 0.5, 1],
                        help="the weights tried on the validation people")
    parser.add_argument("--c", type=float, default=0.01, help="the fixed row's inverse regularisation")
    parser.add_argument("--weights", type=float, nargs=2, default=[0.5, 0.5], metavar=("W_GENDER", "W_AGE"),
                        help="the fixed row's weights")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--cache-dir", default=os.environ.get("FACEMASK_CACHE", str(Path.home() / ".cache" /
                                                                                    "facemask")),
                        help="where the embeddings are kept ('' = nowhere)")
    parser.add_argument("--out", help="also write the table here (CSV)")
    args = parser.parse_args(argv)
    if min(args.cs + [args.c]) <= 0:
        parser.error(f"--c / --cs {min(args.cs + [args.c]):g}: give positive numbers")
    if min(args.weights + args.grid) < 0:
        parser.error(f"--weights / --grid {min(args.weights + args.grid):g}: a weight is at least 0")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give at least 1")
    answers_path = Path(args.answers) if args.answers else Path(args.eval).resolve().parent / "eval_answers.csv"
    for path in (Path(args.train) / "train.csv", Path(args.eval), answers_path):
        if not path.exists():
            parser.error(f"{path}: not found")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        parser.error(f"--out {args.out}: its folder does not exist")
    columns = ["file", "person", "label", *(f"p{i}" for i in range(18))]
    try:  # every input checked, one line each, before any face is embedded
        parse_tta(args.tta)
        train = read_train(Path(args.train).resolve())
        _, eval_table, problems = scan_eval(Path(args.eval).resolve())
        if problems:
            raise FacemaskError(problems[0])
        # runs store their photos' paths as trained: compare resolved paths, however --train is spelt
        row_of = pd.Series(np.arange(len(train)), index=[str(Path(f).resolve()) for f in train["file"]])
        runs, vals = [Run.open(run) for run in args.runs], []
        for run in runs:
            run.config()  # a run whose checkpoint or saved config is broken fails here
            path = run / VAL_PREDICTIONS
            if not path.is_file():
                raise FacemaskError(f"{path} not found (a finished run writes it)")
            val = pd.read_csv(path, dtype={"person": str, "file": str})
            lacking = [c for c in columns if c not in val.columns]
            if lacking:
                raise FacemaskError(f"{path}: no column {lacking[0]!r}")
            val["file"] = [str(Path(f).resolve()) for f in val["file"]]
            unknown = sorted(set(val["file"]) - set(row_of.index))
            if unknown:
                raise FacemaskError(f"{run.path}: its validation photo {unknown[0]} is not one of --train's "
                                    f"({len(unknown)} in all; was it trained on {args.train}?)")
            vals.append(val)
        labels = eval_labels(answers_path, list(eval_table["image_id"]))
    except FacemaskError as err:
        parser.error(str(err))
    eval_files = list(eval_table["file"])

    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    try:
        train_vectors, train_how = embed(list(train["file"]), args.embedding, args.workers, cache_dir)
        eval_vectors, eval_how = embed(eval_files, args.embedding, args.workers, cache_dir)
    except FacemaskError as err:
        parser.error(str(err))
    _, true_gender, true_age = decode(labels)
    rows = []
    for run, val in zip(runs, vals):
        val_vectors = train_vectors[row_of.loc[val["file"]].to_numpy()]
        val_labels = val["label"].to_numpy()
        outside = ~train["person"].isin(set(val["person"])).to_numpy()
        models = {c: fit_attributes(train_vectors[outside], train["label"].to_numpy()[outside], c)
                  for c in sorted(set(args.cs) | {args.c})}
        # the validation people choose C and the weights, from the run's answers there with the eval's --tta
        val_probs = run_probs(run, list(val["file"]), args.tta, progress=False)
        val_views = {c: (g.predict_proba(val_vectors), a.predict_proba(val_vectors)) for c, (g, a) in models.items()}

        def val_f1(c: float, w_gender: float, w_age: float) -> float:
            return macro_f1(val_labels, with_embedding(val_probs, *val_views[c], w_gender, w_age).argmax(1))

        chosen = max(itertools.product(args.cs, args.grid, args.grid), key=lambda cw: val_f1(*cw))
        p_run = run_probs(run, eval_files, args.tta, progress=False)
        _, val_gender, val_age = decode(val_labels)
        p_gender, p_age = (m.predict_proba(eval_vectors) for m in models[chosen[0]])
        rows.append({"run": run.name, "answer": f"{args.embedding} embedding alone (gender, age), C {chosen[0]:g}",
                     "gender_f1": macro_f1(true_gender, p_gender.argmax(1)),
                     "age_f1": macro_f1(true_age, p_age.argmax(1)),
                     "val_gender_f1": macro_f1(val_gender, val_views[chosen[0]][0].argmax(1)),
                     "val_age_f1": macro_f1(val_age, val_views[chosen[0]][1].argmax(1))})
        rows.append({"run": run.name, "answer": "run", **_scores(labels, p_run.argmax(1)),
                     "val_macro_f1": macro_f1(val_labels, val_probs.argmax(1))})
        for name, (c, w_gender, w_age) in (
                (f"run x embedding, C {chosen[0]:g}, weights {chosen[1]:g} {chosen[2]:g} (chosen on validation)",
                 chosen),
                (f"run x embedding, C {args.c:g}, weights {args.weights[0]:g} {args.weights[1]:g} (fixed)",
                 (args.c, *args.weights))):
            g, a = (m.predict_proba(eval_vectors) for m in models[c])
            rows.append({"run": run.name, "answer": name,
                         **_scores(labels, with_embedding(p_run, g, a, w_gender, w_age).argmax(1)),
                         "val_macro_f1": val_f1(c, w_gender, w_age)})
    table = pd.DataFrame(rows)
    print(f"{args.embedding} embeddings: {len(train)} training photos {train_how}, {len(eval_files)} eval photos "
          f"{eval_how}; eval macro F1, accuracy, gender and age F1 (val_*: on the run's validation people):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        table.to_csv(args.out, index=False)
    return table


if __name__ == "__main__":
    main()
