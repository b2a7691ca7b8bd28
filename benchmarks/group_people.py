"""Would grouping an eval folder's photos by person help? The photos of one person share gender and age group, so
combining their evidence could fix some answers. This measures it on a run's validation people (whose ids are
known) before anything is built into `predict`:

- the ceiling: gender and age averaged (in log-probability) over each *true* person's photos, mask kept per photo;
- real groupings: agglomerative clustering at several distance thresholds of (a) dlib's face-recognition
  embeddings (the CC0 ResNet of the `face-recognition-models` package) and (b) the run's own backbone features of
  the upper face (the lower half, where the mask is, greyed), with each grouping's purity (share of photos whose
  group's majority person is theirs), completeness (share of photos in their person's largest group) and the macro
  F1 it gives.

    pip install face-recognition-models      # dlib's models (about 100 MB); not a facemask dependency
    python benchmarks/group_people.py RUN [--thresholds-dlib 0.3 0.4 0.5] [--thresholds-net 0.05 0.1 0.2]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.cluster import AgglomerativeClustering

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.data.faces import HogDetector, face_box  # noqa: E402
from facemask.data.images import load_image  # noqa: E402
from facemask.data.labels import encode, marginals  # noqa: E402
from facemask.data.loaders import decoding_of  # noqa: E402
from facemask.evaluation.metrics import classification_metrics  # noqa: E402
from facemask.runs import VAL_PREDICTIONS, Run  # noqa: E402


def dlib_embeddings(files: list[str]) -> np.ndarray:
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise SystemExit("pip install face-recognition-models (dlib's face-recognition model)")
    models = Path(spec.submodule_search_locations[0]) / "models"  # read without importing (it needs pkg_resources)
    shapes = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    detector = HogDetector()
    out = []
    for file in files:
        rgb = np.asarray(Image.open(file).convert("RGB"))
        (left, top, right, bottom), _ = face_box(rgb, detector, 1.0, 0.0, 0.52)
        shape = shapes(rgb, dlib.rectangle(left, top, right, bottom))
        out.append(np.array(net.compute_face_descriptor(rgb, shape)))
    return np.array(out)


@torch.inference_mode()
def upper_face_features(run: Run, files: list[str]) -> np.ndarray:
    cfg, model = run.load_model("cpu")
    size = (cfg.data.height, cfg.data.width)
    images = torch.stack([torch.from_numpy(load_image(f, size, decoding_of(cfg))).permute(2, 0, 1) for f in files])
    images = images.float()
    images[:, :, size[0] // 2:] = 128  # the lower half (the mask) greyed
    features = torch.cat([model.backbone((images[i:i + 128] - model.mean) / model.std)
                          for i in range(0, len(images), 128)]).numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def grouped_metrics(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    parts = marginals(probs)
    gender = pd.DataFrame(np.log(parts["gender"] + 1e-9)).groupby(groups).transform("mean").to_numpy()
    age = pd.DataFrame(np.log(parts["age"] + 1e-9)).groupby(groups).transform("mean").to_numpy()
    return classification_metrics(labels, encode(parts["mask"].argmax(1), gender.argmax(1), age.argmax(1)))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--thresholds-dlib", type=float, nargs="+", default=[0.3, 0.35, 0.4, 0.45, 0.5])
    parser.add_argument("--thresholds-net", type=float, nargs="+", default=[0.03, 0.05, 0.1, 0.2])
    args = parser.parse_args(argv)
    run = Run.open(args.run)
    val = pd.read_csv(run / VAL_PREDICTIONS, dtype={"person": str})
    probs, labels, people = val[[f"p{i}" for i in range(18)]].to_numpy(), val["label"].to_numpy(), val["person"]
    rows = [{"grouping": "none (each photo alone)", **_scores(classification_metrics(labels, probs.argmax(1)))},
            {"grouping": "true people (the ceiling)", "purity": 1.0, "completeness": 1.0,
             **_scores(grouped_metrics(labels, probs, people.to_numpy()))}]
    start = time.perf_counter()
    embeddings = {"dlib face recognition": (dlib_embeddings(val["file"].tolist()), args.thresholds_dlib, "euclidean"),
                  "backbone, upper face": (upper_face_features(run, val["file"].tolist()), args.thresholds_net,
                                           "cosine")}
    seconds = time.perf_counter() - start
    for name, (vectors, thresholds, metric) in embeddings.items():
        for threshold in thresholds:
            groups = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="average",
                                             metric=metric).fit_predict(vectors)
            table = pd.crosstab(groups, people)
            rows.append({"grouping": f"{name} @ {threshold}", "groups": int(groups.max() + 1),
                         "purity": table.max(axis=1).sum() / len(val),
                         "completeness": table.max(axis=0).sum() / len(val),
                         **_scores(grouped_metrics(labels, probs, groups))})
    result = pd.DataFrame(rows)
    print(f"{run.name}: {people.nunique()} validation people, {len(val)} photos (embeddings: {seconds:.0f} s)")
    print(result.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return result


def _scores(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("macro_f1", "gender_f1", "age_f1")}


if __name__ == "__main__":
    main()
