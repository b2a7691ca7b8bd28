"""A run's evaluation report: PNG plots (matplotlib) and one self-contained report.html with them embedded.

Training curves, per-class F1, the 18x18 and per-attribute confusion matrices, F1 per attribute, and grids of
wrongly predicted validation images per attribute, all from the run folder (metrics.csv, val_predictions.csv).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from facemask.config import config_from_dict  # noqa: E402
from facemask.data.faces import trust_detector  # noqa: E402
from facemask.data.images import Decoding, load_image  # noqa: E402
from facemask.data.labels import ATTRIBUTES, CLASS_NAMES, NUM_CLASSES, decode  # noqa: E402
from facemask.data.loaders import decoding_of  # noqa: E402
from facemask.errors import FacemaskError  # noqa: E402
from facemask.evaluation.metrics import classification_metrics  # noqa: E402
from facemask.io import atomic_write, atomic_write_text, first_line  # noqa: E402
from facemask.runs import CONFIG, METRICS, REPORT, REPORT_DIR, VAL_PREDICTIONS  # noqa: E402

ERRORS_PER_GRID = 16


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))  # a crash leaves no half PNG
    plt.close(fig)
    return path


def plot_curves(metrics: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, name in zip(axes, ("loss", "accuracy", "macro_f1")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(metrics["epoch"], metrics[f"{split}_{name}"], style, label=split, markersize=4)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_class_f1(per_class: dict, support: dict, path: Path, averaged: list[str] | None = None) -> Path:
    """F1 per class with its support; classes left out of the macro average (absent from both the labels and the
    predictions) are drawn hatched and marked "absent"."""
    fig, ax = plt.subplots(figsize=(12, 4))
    values = [per_class[name] for name in CLASS_NAMES]
    averaged = list(CLASS_NAMES) if averaged is None else averaged
    bars = ax.bar(range(NUM_CLASSES), values, color=plt.cm.viridis(np.array(values) * 0.85))
    for bar, name in zip(bars, CLASS_NAMES):
        absent = name not in averaged
        if absent:
            bar.set_height(0.03)
            bar.set_color("#cccccc")
            bar.set_hatch("//")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                "absent" if absent else f"n={support[name]}", ha="center", fontsize=7)
    ax.set_xticks(range(NUM_CLASSES), [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)], rotation=60, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("F1")
    ax.set_title("F1 per class (validation)")
    return _save(fig, path)


def _matrix(ax, cm: np.ndarray, names, title: str) -> None:
    ax.imshow(cm, cmap="Blues")
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7 if len(names) > 3 else 10,
                color="white" if value > cm.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60 if len(names) > 3 else 0, ha="right" if len(names) > 3
                  else "center", fontsize=7 if len(names) > 3 else 9)
    ax.set_yticks(range(len(names)), names, fontsize=7 if len(names) > 3 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def plot_confusion(y_true, y_pred, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 9))
    _matrix(ax, confusion_matrix(y_true, y_pred, labels=range(NUM_CLASSES)), CLASS_NAMES, "confusion (18 classes)")
    return _save(fig, path)


def plot_attribute_confusion(y_true, y_pred, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (attribute, names), t, p in zip(axes, ATTRIBUTES.items(), decode(y_true), decode(y_pred)):
        _matrix(ax, confusion_matrix(t, p, labels=range(len(names))), names, attribute)
    return _save(fig, path)


def plot_attribute_f1(metrics: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = ["macro_f1", *(f"{a}_f1" for a in ATTRIBUTES)]
    values = [metrics[n] for n in names]
    ax.bar(names, values, color=["#444", "#1f77b4", "#ff7f0e", "#2ca02c"])
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_title("macro F1: all 18 classes and per attribute")
    return _save(fig, path)


def plot_errors(predictions: pd.DataFrame, attribute: str, path: Path, decoding: Decoding | None = None,
                size: tuple[int, int] = (128, 96)) -> Path | None:
    """A grid of validation images whose ``attribute`` was predicted wrongly, titled true -> predicted, decoded as
    the run decodes them (``decoding``: face crop, letterbox), so the grid shows what the model saw."""
    index = list(ATTRIBUTES).index(attribute)
    names = ATTRIBUTES[attribute]
    true_part = decode(predictions["label"].to_numpy())[index]
    pred_part = decode(predictions["pred"].to_numpy())[index]
    wrong = predictions[true_part != pred_part].head(ERRORS_PER_GRID)
    if wrong.empty:
        return None
    cols = 8
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 2.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, rec in zip(axes.ravel(), wrong.itertuples(index=False)):
        ax.imshow(load_image(rec.file, size, decoding))
        t, p = decode(int(rec.label))[index], decode(int(rec.pred))[index]
        ax.set_title(f"{names[t]}\n→ {names[p]}", fontsize=8, color="darkred")
    fig.suptitle(f"wrong {attribute} (true → predicted), first {len(wrong)}")
    return _save(fig, path)


def make_report(run: str | Path, trust_run_code: bool = False) -> Path:
    """Write ``RUN/report/*.png`` and ``RUN/report.html``; returns the HTML path. The error grids are decoded as
    the run decodes photos; a run whose face detector is a ``module:factory`` import needs ``trust_run_code``."""
    run = Path(run)
    if not run.is_dir():
        raise FacemaskError(f"run folder {run} not found")
    for name in (METRICS, VAL_PREDICTIONS, CONFIG):
        if not (run / name).is_file():
            raise FacemaskError(f"{run / name} not found (is {run} a finished facemask run?)")
    try:
        metrics = pd.read_csv(run / METRICS)
        predictions = pd.read_csv(run / VAL_PREDICTIONS)
        config = yaml.safe_load((run / CONFIG).read_text(encoding="utf-8"))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise FacemaskError(f"{run} holds an unreadable run file: {first_line(err)}") from err
    run_cfg = config_from_dict(config if isinstance(config, dict) else {})
    if trust_run_code:
        trust_detector(run_cfg.data.face_crop)
    y_true, y_pred = predictions["label"].to_numpy(), predictions["pred"].to_numpy()
    scores = classification_metrics(y_true, y_pred)
    decoding, size = decoding_of(run_cfg), (run_cfg.data.height, run_cfg.data.width)
    out = run / REPORT_DIR
    out.mkdir(exist_ok=True)
    figures = [("Training curves", plot_curves(metrics, out / "curves.png")),
               ("F1 per attribute", plot_attribute_f1(scores, out / "f1_attributes.png")),
               ("F1 per class", plot_class_f1(scores["f1_per_class"], scores["support_per_class"],
                                              out / "f1_per_class.png", scores["averaged_classes"])),
               ("Confusion per attribute", plot_attribute_confusion(y_true, y_pred, out / "confusion_attributes.png")),
               ("Confusion matrix", plot_confusion(y_true, y_pred, out / "confusion.png"))]
    for attribute in ATTRIBUTES:
        grid = plot_errors(predictions, attribute, out / f"errors_{attribute}.png", decoding, size)
        if grid is not None:
            figures.append((f"Wrong {attribute} predictions", grid))
    metric, mode = run_cfg.train.select_metric, run_cfg.train.select_mode
    best = metrics.loc[metrics[metric].idxmax() if mode == "max" else metrics[metric].idxmin()]
    summary = {"run": run.name, "model": run_cfg.model.name, "input": f"{run_cfg.data.height}x{run_cfg.data.width}",
               "epochs": int(metrics["epoch"].max()), f"best epoch (by {metric}, {mode})": int(best["epoch"]),
               "val images": len(predictions), "val macro F1 (best.pt)": f"{scores['macro_f1']:.4f}",
               "classes averaged": f"{len(scores['averaged_classes'])} of {NUM_CLASSES}",
               "val accuracy": f"{scores['accuracy']:.4f}",
               **{f"{a} F1": f"{scores[f'{a}_f1']:.4f}" for a in ATTRIBUTES}}
    html_path = run / REPORT
    atomic_write_text(html_path, _html(summary, figures, config))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return html_path


def _html(summary: dict, figures: list[tuple[str, Path]], config: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    sections = "".join(
        f'<section><h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></section>'
        for title, path in figures)
    config_text = html.escape(yaml.safe_dump(config, sort_keys=False))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>facemask report: {html.escape(str(summary['run']))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1280px; padding: 1rem 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1rem; }} th, td {{ padding: .25rem .8rem; text-align: left; }}
tr:nth-child(odd) {{ background: #f3f5f8; }} img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
section {{ margin: 1.5rem 0; }} pre {{ background: #f3f5f8; padding: .8rem; overflow-x: auto; }}
</style></head>
<body>
<h1>facemask run {html.escape(str(summary['run']))}</h1>
<p>Macro F1 is scikit-learn's <code>f1_score(average="macro")</code> over all validation images: the mean F1 of
the classes present in the labels or the predictions (its default, and the competition's). A class absent from both
is left out of the mean and drawn hatched, marked "absent", in "F1 per class".</p>
<table>{rows}</table>
{sections}
<details><summary>Resolved config</summary><pre>{config_text}</pre></details>
<script>
// Marks how many images decoded, for the browser test and for anyone checking the page.
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  const ok = images.filter(img => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok + "/" + images.length;
}});
</script>
</body></html>
"""
