"""A mask answer that models the bare face instead of the masks (an experiment, measured, not shipped).

A classifier trained on photos of some mask styles learns those styles (benchmarks/unseen_masks.py). This one
never looks at a mask's appearance: for each cell of a frozen ImageNet backbone's feature maps
(tf_efficientnet_lite0 with its ImageNet weights; blocks 2 and 3, stride 8 and 16) it measures how far the photo's
feature is from the nearest feature at that place (+-1 cell) among the training set's bare faces (the `normal`
photos): a "not a bare face here" map. A logistic regression on that map, fitted on the training photos, answers
worn / incorrect / not worn. Whatever covers the nose and mouth, any mask style, is not a bare face.

Prints mask F1 and the recall of worn / incorrect / not worn on the eval photos for the bare-face answer, for each
given run's own answer (its top class, as `facemask predict --data` answers), and for their product (the top
class of p_run(class) * p_bare(its mask): the mask weighed by both, gender and age the run's), and for the bare
face asked only "is the face covered" (p_bare(not worn) against the rest; worn against incorrect, gender and age
the run's), side by side, with the 18-class macro F1 of the last three:

    python benchmarks/bare_face.py --train DATA/train --eval DATA/eval [--answers DATA/eval_answers.csv] \
        [--runs RUN ...] [--tta flip] [--fit-photos 3000] [OVERRIDE ...]

DATA is a competition-layout folder with known eval answers: the stand-in, or a split that
benchmarks/unseen_masks.py rendered under its --out (there the runs of OUT/runs were trained on DATA/train).
The photos are decoded and face-cropped as configs/cpu.yaml does (--config), through facemask's image cache.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import eval_labels  # noqa: E402
from unseen_masks import unseen_scores  # noqa: E402  (the unseen-mask benchmark's mask F1 and recalls)

from facemask.config import ModelConfig, load_config  # noqa: E402
from facemask.data.labels import MASK_NAMES, NUM_CLASSES, attribute_of  # noqa: E402
from facemask.data.layout import read_train, scan_eval  # noqa: E402
from facemask.data.loaders import load_pixels  # noqa: E402
from facemask.errors import FacemaskError  # noqa: E402
from facemask.inference.predict import run_probs  # noqa: E402
from facemask.inference.tta import parse_tta  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402
from facemask.runs import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = (2, 3)  # tf_efficientnet_lite0's blocks 2 (40 channels, stride 8) and 3 (80 channels, stride 16)
NOT_WORN = MASK_NAMES.index("not wear")


def backbone_and_norm():
    model = create_model(ModelConfig(name="tf_efficientnet_lite0", pretrained="imagenet-lite")).eval()
    return model.backbone, model.mean, model.std


@torch.no_grad()
def feature_maps(crops: np.ndarray, backbone, mean: torch.Tensor, std: torch.Tensor, blocks=BLOCKS,
                 batch: int = 128) -> list[torch.Tensor]:
    """Unit-length features (N, C, h, w) of ``crops`` (N, H, W, 3 uint8) after each of ``blocks``."""
    out = [[] for _ in blocks]
    for start in range(0, len(crops), batch):
        x = (torch.from_numpy(np.array(crops[start:start + batch])).permute(0, 3, 1, 2).float()
             - mean) / std
        x = backbone.bn1(backbone.conv_stem(x))
        for index, block in enumerate(backbone.blocks[:max(blocks) + 1]):
            x = block(x)
            if index in blocks:
                out[blocks.index(index)].append(torch.nn.functional.normalize(x, dim=1))
    return [torch.cat(parts) for parts in out]


@torch.no_grad()
def bare_face_distance(maps: torch.Tensor, bank: torch.Tensor, people: np.ndarray | None = None,
                       bank_people: np.ndarray | None = None, reach: int = 1, chunk: int = 512) -> np.ndarray:
    """(N, h*w): for each photo and cell, 1 - the highest cosine similarity between its feature there and the bare
    faces' (``bank``, (M, C, h, w)) within ``reach`` cells of it. With ``people`` (N,) and ``bank_people`` (M,),
    a photo is never measured against a bare face of its own person: a training photo is measured as an eval photo
    is, against other people only (its own bare face, same sitting, would be a near-perfect match)."""
    n, channels, height, width = maps.shape
    own = None
    if people is not None:
        own = torch.from_numpy(np.asarray(people)[:, None] == np.asarray(bank_people)[None, :])  # (N, M)
    distance = torch.zeros(n, height, width)
    for i in range(height):
        for j in range(width):
            near = bank[:, :, max(0, i - reach):i + reach + 1, max(0, j - reach):j + reach + 1]
            near = near.flatten(2)  # (M, C, places)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                similarity = torch.einsum("nc,mcp->nmp", maps[start:stop, :, i, j], near).amax(2)  # (n, M)
                if own is not None:
                    similarity = similarity.masked_fill(own[start:stop], -1.0)
                distance[start:stop, i, j] = 1.0 - similarity.amax(1)
    return distance.flatten(1).numpy()


def distances(crops: np.ndarray, bank_maps: list[torch.Tensor], net, people=None, bank_people=None) -> np.ndarray:
    """The concatenated bare-face distance maps of ``crops`` for every block."""
    maps = feature_maps(crops, *net)
    return np.concatenate([bare_face_distance(m, b, people, bank_people) for m, b in zip(maps, bank_maps)], axis=1)


def fit_bare_face(train_crops: np.ndarray, train_mask: np.ndarray, train_people: np.ndarray, fit_photos: int,
                  seed: int = 0):
    """(bank feature maps, classifier, network): the bank is every training bare face; the classifier is fitted on
    ``fit_photos`` training photos (all if that many or fewer), drawn with ``seed``, each measured against the
    other people's bare faces."""
    net = backbone_and_norm()
    bare = np.flatnonzero(train_mask == NOT_WORN)
    bank_maps = feature_maps(train_crops[bare], *net)
    chosen = np.arange(len(train_crops))
    if fit_photos < len(chosen):
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, fit_photos, replace=False))
    features = distances(train_crops[chosen], bank_maps, net, train_people[chosen], train_people[bare])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
    classifier.fit(features, train_mask[chosen])
    if list(classifier.classes_) != [0, 1, 2]:  # predict_proba's columns must be the mask states 0, 1, 2
        raise SystemExit(f"bare_face.py: the {fit_photos} photos drawn lack a mask state; raise --fit-photos")
    return bank_maps, classifier, net


def with_bare_face(p_run: np.ndarray, p_bare: np.ndarray) -> np.ndarray:
    """(N, 18): a run's class probabilities, each times the bare-face probability of its mask state."""
    return p_run * p_bare[:, attribute_of(np.arange(p_run.shape[1]), "mask")]


def with_bare_face_cover(p_run: np.ndarray, p_bare: np.ndarray) -> np.ndarray:
    """(N, 18): the bare face answers only "is the face covered": p_bare(not worn) for the bare classes and
    1 - p_bare(not worn) shared by worn and incorrect, as the run divides them; within each side, the run's own
    class probabilities (normalised), so gender and age stay the run's and worn against incorrect is the run's."""
    bare = attribute_of(np.arange(p_run.shape[1]), "mask") == NOT_WORN
    # gender x age as the run sees it over all mask states: a side the run gives no mass at all takes this
    overall = p_run.reshape(len(p_run), 3, -1).sum(1)

    def within(side: np.ndarray) -> np.ndarray:
        total = side.sum(1, keepdims=True)
        fallback = overall if side.shape[1] == overall.shape[1] else np.tile(overall, side.shape[1] // overall.shape[1])
        fallback = fallback / fallback.sum(1, keepdims=True)
        return np.where(total > 0, side / np.maximum(total, 1e-300), fallback)

    not_worn = p_bare[:, NOT_WORN:NOT_WORN + 1]
    out = np.empty_like(p_run, dtype=float)
    out[:, ~bare] = within(p_run[:, ~bare]) * (1 - not_worn)
    out[:, bare] = within(p_run[:, bare]) * not_worn
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training folder (train.csv, images/)")
    parser.add_argument("--eval", required=True, help="eval folder (info.csv, images/)")
    parser.add_argument("--answers", help="the eval answers (default: eval_answers.csv beside the eval folder)")
    parser.add_argument("--runs", nargs="*", default=[], help="runs whose mask answer to compare and multiply")
    parser.add_argument("--tta", default=None, help="the runs' test-time augmentation, e.g. flip")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu.yaml"), help="decoding and face crop")
    parser.add_argument("--fit-photos", type=int, default=3000, help="training photos the classifier is fitted on")
    parser.add_argument("--out", help="also write the table here (CSV)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of --config, e.g. data.cache_dir=DIR")
    args = parser.parse_args(argv)
    if args.fit_photos < 1:
        parser.error(f"--fit-photos {args.fit_photos}: give at least 1")
    answers_path = Path(args.answers) if args.answers else Path(args.eval).resolve().parent / "eval_answers.csv"
    for path in (Path(args.train) / "train.csv", Path(args.eval), answers_path):
        if not path.exists():
            parser.error(f"{path}: not found")
    try:  # every input checked, one line each, before any image is decoded
        parse_tta(args.tta)
        for run in args.runs:
            Run.open(run).config()  # a run whose checkpoint or saved config is broken fails here
        cfg = load_config(args.config, [f"data.root={args.train}", *args.overrides])
        if not cfg.data.cache:
            parser.error("data.cache=false: this benchmark reads the decoded-image cache")
        train = read_train(args.train)
        _, eval_table, problems = scan_eval(args.eval)
    except FacemaskError as err:
        parser.error(str(err))
    if problems:
        parser.error(problems[0])
    train_mask = attribute_of(train["label"].to_numpy(), "mask")
    if set(train_mask) != {0, 1, 2}:
        parser.error(f"{args.train}: the training photos lack a mask state (worn, incorrect and bare are all needed)")
    try:
        labels = eval_labels(answers_path, list(eval_table["image_id"]))
    except FacemaskError as err:
        parser.error(str(err))
    eval_files = list(eval_table["file"])

    train_crops, bad = load_pixels(list(train["file"]), cfg, progress=False)
    eval_crops, bad_eval = load_pixels(eval_files, cfg, progress=False)
    if bad or bad_eval:
        parser.error(f"{(bad or bad_eval)[0][0]}: {(bad or bad_eval)[0][1]}")
    people = train["person"].to_numpy()
    bank_maps, classifier, net = fit_bare_face(np.asarray(train_crops), train_mask, people, args.fit_photos)
    p_bare = classifier.predict_proba(distances(np.asarray(eval_crops), bank_maps, net))
    # the bare face answers the mask only: scored as the class of that mask and the first gender and age group
    rows = [{"answer": "bare face", **unseen_scores(labels, p_bare.argmax(1) * (NUM_CLASSES // 3)),
             "macro_f1": float("nan")}]
    for run in args.runs:
        p_run = run_probs(run, eval_files, args.tta, progress=False)
        for name, scores in ((f"run {Path(run).name}", p_run),
                             (f"run {Path(run).name} x bare face", with_bare_face(p_run, p_bare)),
                             (f"run {Path(run).name} x bare face, cover only", with_bare_face_cover(p_run, p_bare))):
            # as `facemask predict --data` answers: the top class (gender and age are the run's)
            rows.append({"answer": name, **unseen_scores(labels, scores.argmax(1))})
    table = pd.DataFrame(rows)
    print(f"{len(train)} training photos ({int((train_mask == NOT_WORN).sum())} bare faces in the bank; the classifier "
          f"fitted on {min(args.fit_photos, len(train))}), {len(eval_files)} eval photos")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        table.to_csv(args.out, index=False)
    return table


if __name__ == "__main__":
    main()
