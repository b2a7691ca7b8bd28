"""Preflight: validate a whole dataset up front and report every problem with its file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from facemask.data.images import check_images, find_faceless
from facemask.data.labels import AGE_NAMES, CLASS_NAMES, GENDER_NAMES, MASK_NAMES
from facemask.data.layout import scan_eval, scan_train
from facemask.errors import DataError


@dataclass
class DataReport:
    summary: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = list(self.summary)
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"problem: {p}" for p in self.problems]
        verdict = "no problems found" if not self.problems else f"{len(self.problems)} problems found"
        return "\n".join(lines + [verdict])


def _class_table(samples: pd.DataFrame) -> list[str]:
    counts = samples["label"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    lines = ["images per class:"]
    lines += [f"  {label:2d} {name:<24} {int(n):6d}" for label, (name, n) in enumerate(zip(CLASS_NAMES, counts))]
    people = samples.groupby("person")[["gender", "age_group"]].first()
    lines.append("people per gender: " + ", ".join(
        f"{name} {int((people.gender == i).sum())}" for i, name in enumerate(GENDER_NAMES)))
    lines.append("people per age group: " + ", ".join(
        f"{name} {int((people.age_group == i).sum())}" for i, name in enumerate(AGE_NAMES)))
    lines.append("images per mask state: " + ", ".join(
        f"{name} {int((samples['mask'] == i).sum())}" for i, name in enumerate(MASK_NAMES)))
    return lines


def face_rate_lines(samples: pd.DataFrame, faceless: list[str], detector: str) -> list[str]:
    """How often the face-crop detector finds a face, overall and per mask state."""
    found = ~samples["file"].isin(set(faceless))
    lines = [f"face found by {detector}: {int(found.sum())}/{len(samples)} photos ({found.mean():.1%})"]
    lines.append("  by mask state: " + ", ".join(
        f"{name} {found[samples['mask'] == i].mean():.1%}" for i, name in enumerate(MASK_NAMES)
        if (samples["mask"] == i).any()))
    return lines


def check_dataset(root: str | Path, progress: bool = True, workers: int = 0, faces: str = "") -> DataReport:
    """Check ``root`` (a train folder, an eval folder, or a folder holding train/ and/or eval/); with ``faces``
    (a detector name), also measure how often the face-crop step finds a face in the training photos."""
    root = Path(root)
    report = DataReport()
    if faces:
        from facemask.data.faces import get_detector, trust_detector

        trust_detector(faces)  # the user named it on the command line
        get_detector(faces)  # an unknown name or a missing dlib is one line, before any image is read
    train_root = root if (root / "train.csv").is_file() else root / "train"
    eval_root = root if (root / "info.csv").is_file() else root / "eval"
    has_train, has_eval = (train_root / "train.csv").is_file(), (eval_root / "info.csv").is_file()
    if not has_train and not has_eval:
        raise DataError(f"{root} holds neither train.csv nor info.csv (nor train/ or eval/ folders with them)")
    if has_train:
        samples, problems, warnings = scan_train(train_root)
        report.problems += problems
        report.warnings += warnings
        bad = check_images(samples["file"].tolist(), workers=workers, progress=progress)
        report.problems += [message for _, message in bad]
        report.summary += [f"train: {train_root}: {samples.person.nunique()} people, {len(samples)} images"]
        report.summary += _class_table(samples)
        if faces:
            ok = samples[~samples["file"].isin({file for file, _ in bad})]
            report.summary += face_rate_lines(ok, find_faceless(ok["file"].tolist(), faces, workers=workers,
                                                                 progress=progress), faces)
    if has_eval:
        info, table, problems = scan_eval(eval_root)
        report.problems += problems
        from facemask.data.layout import inside

        present = [f for f, i in zip(table["file"], table["image_id"]) if inside(i) and Path(f).is_file()]
        bad = check_images(present, workers=workers, progress=progress)
        report.problems += [message for _, message in bad]
        report.summary.append(f"eval: {eval_root}: {len(info)} images listed in info.csv")
    return report
