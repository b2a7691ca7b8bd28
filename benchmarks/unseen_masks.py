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
import importlib.util
import inspect
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


def styled_kit(kit: Path, out: Path, train_styles, eval_styles, eval_ids: set[str], nose_out: bool = False
               ) -> Path:
    """A kit whose renders.csv gives training people ``train_styles`` and eval people ``eval_styles``; with
    ``nose_out``, every incorrectly worn mask is placed so that its render leaves the nose uncovered
    (KitGeometry.below_nose) rather than where the kit placed it."""
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
    if nose_out:
        geometry = KitGeometry(kit)
        for i in geometry.incorrect_rows():
            six = geometry.below_nose(i, rows[i]["template"], rows[i]["color"])
            rows[i]["points"] = " ".join(f"{v:.2f}" for v in six.ravel())
    with open(out / "renders.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def eval_ids_of(kit: Path, people: int, eval_fraction: float, seed: int) -> set[str]:
    """The people build.py will put in eval/ for these arguments (it draws them with its own seeded RNG)."""
    import random

    build = kit_module(kit)
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


def kit_module(kit: Path):
    """The kit's build.py as a module (its homography and mask templates), as trusted as running it, which the
    benchmark does anyway to render."""
    spec = importlib.util.spec_from_file_location("standin_build", kit / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jitter_matrix(angle: float, scale: float, dx: float, dy: float, width: int, height: int) -> np.ndarray:
    """The kit's per-photo move (its ``jitter``: rotate and scale about the centre, then shift) as a 3x3 matrix."""
    a = np.deg2rad(angle)
    c, s = scale * np.cos(a), scale * np.sin(a)
    cx, cy = width / 2, height / 2
    return np.array([[c, s, (1 - c) * cx - s * cy + dx], [-s, c, s * cx + (1 - c) * cy + dy], [0, 0, 1]])


def _moved(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.c_[points, np.ones(len(points))] @ matrix.T
    return p[:, :2] / p[:, 2:3]


class KitGeometry:
    """Where each person's nose is in a kit's photos, and whether a mask as the kit renders it covers it.

    The kit places a mask by a homography from the template's six points to six points on the face. For some
    templates and placements (surgical masks on the chin, N95) the fit misses the top point by far and the mask is
    drawn up over the nose, so that most of the stand-in's incorrect_mask photos cover the nose they are labelled as
    leaving out (docs/results.md). Each person's correctly worn masks start on the nose bridge (the median of their
    top-centre points, moved back to the person's unmoved photo: the kit moves each photo a little) and end at the
    chin; a mask worn below the nose starts a share ``nose_share`` of the way down (the median over the kit's
    nose-mode photos), one on the chin ``chin_share``. Correctly worn masks cover the point halfway down the nose
    (``nose_share / 2``) in 99.97% of the stand-in's photos."""

    def __init__(self, kit: Path, reference: Path | None = None):
        """The photos of ``kit``; where the nose is comes from ``reference`` (default: the kit itself), so that a
        copy whose incorrectly worn masks were placed anew is judged by the original kit's faces and shares."""
        self.build = kit_module(kit)
        self.templates = self.build.Templates(kit / "masks")
        self.rows, self.six, self.moves = self._photos(kit)
        if reference is not None and reference.resolve() != kit.resolve():
            rows, six, moves = self._photos(reference)
        else:
            rows, six, moves = self.rows, self.six, self.moves
        unmoved = {i: _moved(np.linalg.inv(moves[i]), p) for i, p in six.items()}
        correct = rows[rows["mode"] == "correct"]
        self.worn = {person: np.median([unmoved[i] for i in group.index], axis=0)
                     for person, group in correct.groupby("id")}  # six points of a correctly worn mask, unmoved
        self.down = {person: six[4] - six[1] for person, six in self.worn.items()}  # bridge -> chin

        def share(mode: str) -> float:
            chosen = [i for i in rows.index[rows["mode"] == mode] if rows["id"][i] in self.worn]
            return float(np.median([np.dot(unmoved[i][1] - self.worn[rows["id"][i]][1], self.down[rows["id"][i]])
                                    / np.dot(self.down[rows["id"][i]], self.down[rows["id"][i]]) for i in chosen]))
        self.nose_share, self.chin_share = share("nose"), share("chin")

    def _photos(self, kit: Path):
        """The masked photos of a kit's renders.csv, their six points and their per-photo moves."""
        rows = pd.read_csv(kit / "renders.csv", dtype={"id": str}, keep_default_na=False)
        rows = rows[rows["template"] != ""]
        six = {i: np.array(p.split(), dtype=float).reshape(6, 2) for i, p in rows["points"].items()}
        moves = {i: _jitter_matrix(*(float(v) for v in r), self.build.W, self.build.H)
                 for i, r in zip(rows.index, rows[["angle", "scale", "dx", "dy"]].itertuples(False))}
        return rows, six, moves

    def point(self, person: str, share: float) -> np.ndarray:
        """The point a share of the way from the nose bridge to the chin, on the person's unmoved photo."""
        return self.worn[person][1] + share * self.down[person]

    def covers(self, i: int, template: str, colour: str, six: np.ndarray, point: np.ndarray) -> bool:
        """Whether the mask ``template`` placed at ``six`` on row i's photo covers ``point`` (unmoved)."""
        rgba, points = self.templates.get(template, colour or None)
        inside = _moved(np.linalg.inv(self.build.homography(points, six)), _moved(self.moves[i], point[None]))[0]
        x, y = int(round(inside[0])), int(round(inside[1]))
        return bool(0 <= y < rgba.shape[0] and 0 <= x < rgba.shape[1] and rgba[y, x, 3] > 127)

    def nose_uncovered(self, i: int) -> bool:
        """Whether row i's mask, as the kit renders it, leaves the point halfway down the nose uncovered."""
        row = self.rows.loc[i]
        nose = self.point(row["id"], self.nose_share / 2)
        return not self.covers(i, row["template"], row["color"], self.six[i], nose)

    def incorrect_rows(self) -> list[int]:
        return [i for i in self.rows.index[self.rows["image"] == "incorrect_mask"] if self.rows["id"][i] in self.worn]

    def below_nose(self, i: int, template: str, colour: str) -> np.ndarray:
        """Six points for row i (an incorrectly worn mask) that leave the nose uncovered as its label says: the
        person's correctly worn placement, its top edge slid down the face in steps of 2% of the bridge-to-chin
        length until the rendered mask leaves the point where the kit meant its top edge to be (its nose- or
        chin-mode median, and never above the nose-mode one) uncovered. The bottom edge stays where the kit put it
        (never above the worn mask's), so the mask is squeezed, as one pulled down onto the chin is, rather than
        slid whole down onto the neck; only if the mask would become shorter than a third of its worn height does
        the bottom edge move down with the top."""
        person = self.rows["id"][i]
        share = self.nose_share if self.rows["mode"][i] == "nose" else max(self.chin_share, self.nose_share)
        target = self.point(person, share)
        down = self.down[person]
        kit_bottom = _moved(np.linalg.inv(self.moves[i]), self.six[i])[4]  # the kit's bottom centre, unmoved
        bottom = max(0.0, float(np.dot(kit_bottom - self.worn[person][4], down) / np.dot(down, down)))
        for step in range(0, 101):
            top = 0.02 * step
            points = self.worn[person].copy()
            points[:3] += top * down
            points[3:] += max(bottom, top - 2 / 3) * down  # worn height is 1 (bridge to chin): keep a third
            six = _moved(self.moves[i], points)
            if not self.covers(i, template, colour, six, target):
                return six
        return six


def nose_uncovered(kit: Path, reference: Path | None = None) -> dict[str, bool]:
    """For each incorrect_mask photo of a kit (by eval ImageID): whether its rendered mask leaves the nose uncovered,
    as its label says (the point halfway down the nose, KitGeometry; the nose found in ``reference``'s photos)."""
    geometry = KitGeometry(kit, reference)
    return {hashlib.sha1(f"{geometry.rows['id'][i]}/incorrect_mask".encode()).hexdigest() + ".jpg":
            geometry.nose_uncovered(i) for i in geometry.incorrect_rows()}


def nose_report(kit: Path) -> pd.DataFrame:
    """The kit's incorrectly worn masks by template and mode: how many, and the share whose render leaves the nose
    uncovered."""
    geometry = KitGeometry(kit)
    rows = geometry.rows.loc[geometry.incorrect_rows()]
    uncovered = [geometry.nose_uncovered(i) for i in rows.index]
    table = rows.assign(nose_uncovered=uncovered).groupby(["template", "mode"])["nose_uncovered"]
    report = pd.DataFrame({"photos": table.size(), "nose_uncovered": table.mean()})
    report.loc[("all", ""), :] = [len(rows), float(np.mean(uncovered))]
    return report


HAND_SHARE = 0.62  # the mouth, a share of the way from the nose bridge to the chin


def hand_shape(length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A flat hand with its fingers held together, seen from the palm or the back, for a face whose bridge-to-chin
    length is ``length`` pixels: two square (S, S) maps in 0..1, the hand's alpha and the lines between its fingers,
    the palm's centre at their centre, the fingers pointing up and turned by up to 90 degrees either way, the thumb
    along one side. A different hand from the ``hand`` preset's (four separate fingers, often nearly together, up
    to about 14 degrees apart; other proportions; one shaded colour, no skin texture), so that a recipe trained
    with that preset is not scored on its own drawings."""
    from PIL import Image, ImageDraw, ImageFilter

    scale = length * rng.uniform(0.9, 1.2)
    turn = np.deg2rad(rng.uniform(-90, 90))
    side = rng.choice([-1.0, 1.0])  # left or right hand
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    supersample, size = 2, 2 * int(np.ceil(1.4 * scale)) + 1
    canvas = Image.new("L", (size * supersample, size * supersample), 0)
    draw = ImageDraw.Draw(canvas)

    def place(points: np.ndarray) -> list[tuple[float, float]]:
        points = (points * np.array([side, 1.0]) * scale) @ rotation.T + size / 2
        return [(float(x * supersample), float(y * supersample)) for x, y in points]

    width, reach = 0.30 * rng.uniform(0.9, 1.1), 1.0 * rng.uniform(0.9, 1.1)  # half width; palm heel to fingertips
    arc = np.linspace(0, np.pi, 24)
    tips = np.c_[width * np.cos(arc), -(reach - 0.4) - 0.6 * width * np.sin(arc)]  # the fingertips, one curve
    heel = np.c_[width * 0.9 * np.cos(arc + np.pi), 0.4 + 0.3 * width * np.sin(arc)]
    draw.polygon(place(np.r_[tips, heel]), fill=255)  # the palm and the closed fingers
    thumb_angle = np.deg2rad(rng.uniform(5, 35))  # the thumb along the side, a little away from it
    direction = np.array([np.sin(thumb_angle), -np.cos(thumb_angle)])
    normal = np.array([-direction[1], direction[0]])
    start, long, wide = np.array([width * 0.8, 0.25]), 0.5, 0.13
    end = start + long * direction
    tip = [end + wide / 2 * (np.cos(a) * normal + np.sin(a) * direction) for a in np.linspace(0, np.pi, 12)]
    draw.polygon(place(np.array([start + wide / 2 * normal, *tip, start - wide / 2 * normal])), fill=255)
    alpha = canvas.filter(ImageFilter.GaussianBlur(supersample)).resize((size, size), Image.BILINEAR)
    lines = Image.new("L", canvas.size, 0)
    for x in (-width / 2, 0.0, width / 2):  # between the four fingers, from the fingertips down to the palm
        top = -(reach - 0.4) - 0.6 * width * np.sqrt(max(0.0, 1 - (x / width) ** 2))
        ImageDraw.Draw(lines).line(place(np.array([[x, top], [x, -0.05]])), fill=255,
                                   width=max(1, int(0.02 * scale * supersample)))
    lines = lines.filter(ImageFilter.GaussianBlur(supersample)).resize((size, size), Image.BILINEAR)
    return np.asarray(alpha, dtype=np.float32) / 255, np.asarray(lines, dtype=np.float32) / 255


def hand_over_mouth(photo: np.ndarray, skin: np.ndarray, mouth: np.ndarray, length: float,
                    rng: np.random.Generator) -> np.ndarray:
    """``photo`` (H, W, 3 uint8) with a hand held over the mouth: the silhouette of ``hand_shape``, its palm a little
    below and beside the mouth so that it covers the mouth (and often the nose), made of ``skin`` (a patch of real
    skin, another person's cheek, enlarged to the hand's size) with the shading of a rounded surface and darker lines
    between the fingers."""
    from PIL import Image, ImageFilter

    h, w = photo.shape[:2]
    shape, lines = hand_shape(length, rng)
    size = shape.shape[0]
    centre = mouth + length * np.array([rng.uniform(-0.15, 0.15), rng.uniform(0.05, 0.3)])
    x0, y0 = int(round(centre[0])) - size // 2, int(round(centre[1])) - size // 2
    alpha, crease = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    texture = np.zeros((h, w, 3), np.float32)  # the patch enlarged over the hand's square: skin and its gradient
    enlarged = np.asarray(Image.fromarray(skin).resize((size, size), Image.BICUBIC), dtype=np.float32)
    top, left = max(0, y0), max(0, x0)
    bottom, right = min(h, y0 + size), min(w, x0 + size)
    if bottom > top and right > left:
        alpha[top:bottom, left:right] = shape[top - y0:bottom - y0, left - x0:right - x0]
        crease[top:bottom, left:right] = lines[top - y0:bottom - y0, left - x0:right - x0]
        texture[top:bottom, left:right] = enlarged[top - y0:bottom - y0, left - x0:right - x0]
    inner = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(max(1.0, 0.05 * length))), dtype=np.float32) / 255
    shading = ((0.78 + 0.3 * inner) * (1 - 0.3 * crease))[..., None]  # darker at the edges and between fingers
    out = photo.astype(np.float32) * (1 - alpha[..., None]) + (texture * shading).clip(0, 255) * alpha[..., None]
    return out.round().clip(0, 255).astype(np.uint8)


def hand_photos(kit: Path, data: Path, reference: Path, seed: int = 0) -> list[str]:
    """The eval people's bare photos (``normal``, labelled "not worn") with a hand over the mouth, written once to
    ``data``/hands-<hash>/ under their own ImageIDs: the files, in ImageID order. The mouth is placed from the person's
    correctly worn masks (KitGeometry, from ``reference``), moved as the kit moved the bare photo; each hand is made
    of the next person's cheek. Drawn hands, not real ones: the figure says whether a model calls a face with
    something other than a mask over its mouth "worn"."""
    import shutil

    from PIL import Image

    # named by the drawing code too, so that a reused --out never scores hands drawn by an earlier version
    drawing = "".join(inspect.getsource(f) for f in (hand_shape, hand_over_mouth, hand_photos))
    folder = data / f"hands-{hashlib.sha1(f'{drawing}{seed}'.encode()).hexdigest()[:8]}"
    answers_of_eval = pd.read_csv(data / "eval_answers.csv", dtype={"ImageID": str})
    geometry = KitGeometry(kit, reference)
    rows = pd.read_csv(kit / "renders.csv", dtype={"id": str}, keep_default_na=False)
    bare = rows[rows["image"] == "normal"].copy()
    bare["ImageID"] = [hashlib.sha1(f"{person}/normal".encode()).hexdigest() + ".jpg" for person in bare["id"]]
    bare = bare[bare["ImageID"].isin(set(answers_of_eval["ImageID"])) & bare["id"].isin(set(geometry.worn))]
    bare = bare.sort_values("ImageID").reset_index(drop=True)
    files = [str(folder / image_id) for image_id in bare["ImageID"]]
    if folder.is_dir():
        return files
    photos = [np.asarray(Image.open(data / "eval" / "images" / i).convert("RGB")) for i in bare["ImageID"]]
    places = []
    for row, photo in zip(bare.itertuples(), photos):
        move = _jitter_matrix(row.angle, row.scale, row.dx, row.dy, geometry.build.W, geometry.build.H)
        length = float(np.linalg.norm(geometry.down[row.id])) * row.scale
        bridge, down = geometry.worn[row.id][1], geometry.down[row.id]
        across = np.array([-down[1], down[0]])  # across the face, the length of the nose bridge-to-chin line
        cheek = _moved(move, (bridge + 0.25 * down + 0.35 * across)[None])[0]  # beside the nose, under the eye
        half = max(3, int(round(0.04 * length)))
        x, y = (int(round(v)) for v in cheek)
        x, y = min(max(x, half), photo.shape[1] - half), min(max(y, half), photo.shape[0] - half)  # in the photo
        places.append((_moved(move, geometry.point(row.id, HAND_SHARE)[None])[0], length,
                       photo[y - half:y + half, x - half:x + half]))
    partial = Path(tempfile.mkdtemp(prefix="hands-", dir=data))
    try:
        for k, row in enumerate(bare.itertuples()):
            rng = np.random.default_rng([seed, int(hashlib.sha1(row.ImageID.encode()).hexdigest()[:8], 16)])
            skin = places[(k + 1) % len(bare)][2]
            drawn = hand_over_mouth(photos[k], skin, places[k][0], places[k][1], rng)
            Image.fromarray(drawn).save(partial / row.ImageID, quality=95)
        partial.rename(folder)  # all or nothing: a killed run leaves no half-drawn folder to reuse
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if folder.is_dir():  # another run drew them first
            return files
        raise
    return files


def unseen_scores(labels: np.ndarray, predictions: np.ndarray, nose_out: np.ndarray | None = None) -> dict:
    """Mask F1 and the recall of each mask state; with ``nose_out`` (the incorrectly worn photos whose nose the
    render really leaves uncovered), the incorrect recall on those alone as well."""
    truth, guess = attribute_of(labels, "mask"), attribute_of(predictions, "mask")
    recall = recall_score(truth, guess, labels=[0, 1, 2], average=None, zero_division=0)
    scores = {"mask_f1": float(f1_score(truth, guess, labels=[0, 1, 2], average="macro", zero_division=0)),
              **{f"recall_{name.replace(' ', '_')}": float(r) for name, r in zip(MASK_NAMES, recall)},
              "macro_f1": macro_f1(labels, predictions)}
    if nose_out is not None:
        chosen = nose_out & (truth == MASK_NAMES.index("incorrect"))
        scores["recall_incorrect_nose_out"] = float((guess[chosen] == MASK_NAMES.index("incorrect")).mean()) \
            if chosen.any() else float("nan")
    return scores


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


COLUMNS = ["mask_f1", "recall_wear", "recall_incorrect", "recall_not_wear", "recall_incorrect_nose_out",
           "not_worn_hand"]


def _columns(table: pd.DataFrame) -> list[str]:
    return [column for column in COLUMNS if column in table]


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Each split and recipe's mean over its training seeds, with their standard deviation: "0.509 (0.136)"."""
    by_split = table.groupby(["split", "recipe"], sort=False)[_columns(table)]
    return by_split.mean().map(lambda v: f"{v:.3f}") + " (" + by_split.std().map(lambda v: f"{v:.3f}") + ")"


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
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
    parser.add_argument("--incorrect", choices=["kit", "nose-out"], default="kit",
                        help="where incorrectly worn masks go: where the kit puts them (most of them over the nose, "
                             "docs/results.md), or pulled down the face until the nose is uncovered")
    parser.add_argument("--hands", action="store_true",
                        help="also score each run on the eval people's bare photos with a drawn hand over the mouth "
                             "(column not_worn_hand: the share answered 'not worn')")
    parser.add_argument("--nose-report", action="store_true",
                        help="only print, for the kit as it is, the share of incorrectly worn masks by template and "
                             "mode whose render leaves the nose uncovered")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every recipe, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    if any(override.startswith("train.seed=") for override in args.overrides):
        parser.error("give training seeds with --train-seeds, not train.seed=")
    stems = [Path(config).stem for config in args.configs]
    if args.mask_from is not None and (not set(args.mask_from) <= set(stems) or set(stems) <= set(args.mask_from)):
        parser.error(f"--mask-from {' '.join(args.mask_from)}: name some of the --configs by their stems "
                     f"({', '.join(stems)}), leaving at least one to take the mask answer")
    kit = Path(args.kit).resolve()
    if args.nose_report:
        print(nose_report(kit).to_string(float_format=lambda v: f"{v:.3f}"))
        return None
    work = Path(args.out or tempfile.mkdtemp(prefix="facemask-unseen-")).resolve()
    eval_ids = eval_ids_of(kit, args.people, args.eval_fraction, args.seed)
    rows = []
    for split in args.splits:
        train_styles, eval_styles = SPLITS[split]
        name = split.replace("->", "-to-") + ("-nose-out" if args.incorrect == "nose-out" else "")
        styled = styled_kit(kit, work / f"kit-{name}", train_styles, eval_styles, eval_ids,
                            nose_out=args.incorrect == "nose-out")
        # the data set (and so every run trained on it, by its data.root) is named by the renders it was made from,
        # so that a reused --out never scores runs of one placement on the data of another
        name += "-" + hashlib.sha1((styled / "renders.csv").read_bytes()).hexdigest()[:8]
        data = render(styled, work / name, args.people, args.eval_fraction, args.seed)
        answers_of_eval = pd.read_csv(data / "eval_answers.csv", dtype={"ImageID": str})
        files = [str(data / "eval" / "images" / i) for i in answers_of_eval["ImageID"]]
        nose_out = nose_uncovered(styled, reference=kit)
        nose_out = answers_of_eval["ImageID"].map(nose_out).fillna(False).to_numpy(bool)
        incorrect = attribute_of(answers_of_eval["ans"].to_numpy(), "mask") == MASK_NAMES.index("incorrect")
        hands = hand_photos(styled, data, kit) if args.hands else []
        placed = "placed anew (--incorrect nose-out)" if args.incorrect == "nose-out" else "as the kit places them"
        print(f"{split}: the nose is uncovered in {int(nose_out.sum())} of {int(incorrect.sum())} incorrectly worn "
              f"eval photos, their masks {placed}", flush=True)
        for seed in args.train_seeds:
            probs = {}
            for config in args.configs:
                cfg = load_config(config, [f"data.root={data / 'train'}", f"train.output_dir={work / 'runs'}",
                                           f"train.epochs={args.epochs}", f"data.cache_dir={work / 'cache'}",
                                           f"train.name={Path(config).stem}-{name}", "track.mlflow=false",
                                           "train.report=false", "train.progress=false", "data.val_fraction=0.1",
                                           f"train.seed={seed}", *args.overrides])
                run = (trained_run(cfg, work / "runs") if args.reuse_runs else None) or fit(cfg)
                probs[Path(config).stem] = run_probs(run, files + hands, args.tta, progress=False), run
            recipes = [(stem, p.argmax(1), [run]) for stem, (p, run) in probs.items()]
            if args.mask_from is not None:
                combined = with_mask_from({stem: p for stem, (p, _) in probs.items()}, args.mask_from)
                recipes += [(name, guesses, [probs[stem][1]] + [probs[m][1] for m in args.mask_from])
                            for name, (stem, guesses) in combined.items()]
            for recipe, guesses, runs in recipes:
                guesses, on_hands = guesses[:len(files)], guesses[len(files):]
                scores = unseen_scores(answers_of_eval["ans"].to_numpy(), guesses, nose_out)
                if hands:  # a face with a hand over its mouth wears no mask
                    scores["not_worn_hand"] = float((attribute_of(on_hands, "mask") ==
                                                     MASK_NAMES.index("not wear")).mean())
                rows.append({"split": split, "recipe": recipe, "seed": seed, **scores,
                             "run": ";".join(str(run) for run in runs)})
                print(f"{split:>17}  {recipe:<18} seed {seed:<3} mask F1 {scores['mask_f1']:.4f}  recall "
                      f"worn {scores['recall_wear']:.3f}  incorrect {scores['recall_incorrect']:.3f}  not worn "
                      f"{scores['recall_not_wear']:.3f}  incorrect, nose out "
                      f"{scores['recall_incorrect_nose_out']:.3f}  (macro F1 {scores['macro_f1']:.4f})"
                      + (f"  hand over the mouth: not worn {scores['not_worn_hand']:.3f}" if hands else ""),
                      flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.people} people ({1 - args.eval_fraction:.0%} train, {args.eval_fraction:.0%} eval), "
          f"{args.epochs} epochs; eval people wear only the styles their training never saw")
    print(table.drop(columns="run").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if len(args.train_seeds) > 1:
        print(f"\nmean (sd) over the {len(args.train_seeds)} training seeds:")
        print(seed_summary(table).to_string())
    summary = table.groupby("recipe", sort=False)[_columns(table)].mean()
    print(f"\nmean over the splits{' and seeds' if len(args.train_seeds) > 1 else ''} "
          "(targets: mask F1 >= 0.95, incorrect recall >= 0.9):")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    table.to_csv(work / "unseen_masks.csv", index=False)
    print(f"\n{work / 'unseen_masks.csv'}")
    return table


if __name__ == "__main__":
    main()
