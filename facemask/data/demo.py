"""A synthetic demo dataset in the competition layout, drawn procedurally with Pillow (no real faces).

Every person gets seven 384x512 photos (mask1..mask5, incorrect_mask, normal). The labels are visible but not
trivial: the mask covers nose and mouth (worn), sits below the nose or on the chin (incorrect) or is absent; gender
shows in hair length, jaw width, brows and lips; age drives grey hair and wrinkles *with noise*, so people near
the 30 and 60 borders are ambiguous as in real photos. Skin tone, pose, scale, lighting, background and mask style
vary per person and per photo. The same arguments always give the same pixels.
"""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from facemask.data.labels import IMAGE_STEMS, MASK_OF_STEM, age_group, encode
from facemask.io import cpu_count

WIDTH, HEIGHT = 384, 512
SKIN_TONES = [(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 96), (161, 102, 70), (112, 70, 45)]
HAIR_COLOURS = [(25, 20, 18), (60, 40, 28), (95, 65, 40), (150, 110, 60), (190, 160, 100)]
MASK_COLOURS = [(236, 236, 236), (120, 170, 220), (40, 40, 45), (235, 170, 190), (150, 150, 155), (30, 50, 100),
                (200, 185, 160), (110, 150, 110)]
CLOTHES = [(40, 60, 120), (150, 30, 40), (30, 30, 30), (220, 220, 220), (60, 110, 70), (200, 150, 60)]


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _jitter(rng: np.random.Generator, colour, amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _person_traits(rng: np.random.Generator, gender: int, age: int) -> dict:
    """Stable per-person looks; age shows through noisy grey and wrinkle levels."""
    grey = float(np.clip((age - 28) / 40 + rng.normal(0, 0.13), 0, 1))
    return {
        "skin": _jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))]),
        "hair": _mix(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], (225, 225, 225), grey),
        "grey": grey,
        "wrinkles": int(np.clip(round((age - 22) / 7 + rng.normal(0, 1.0)), 0, 7)),
        "long_hair": bool(rng.random() < (0.85 if gender == 1 else 0.08)),
        "bald": bool(gender == 0 and age > 40 and rng.random() < 0.3),
        "jaw": (1.0 if gender == 0 else 0.9) + rng.normal(0, 0.035),
        "brow": (5 if gender == 0 else 2) + int(rng.integers(0, 2)),
        "lips": (170, 60, 80) if gender == 1 and rng.random() < 0.7 else None,
        "beard": bool(gender == 0 and rng.random() < 0.35),
        "clothes": _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))], 25),
        "background": [_jitter(rng, (int(v) for v in rng.integers(40, 220, 3)), 0) for _ in range(2)],
    }


def _ellipse_points(cx, cy, rx, ry, start_deg, end_deg, n=24):
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start_deg, end_deg, n)]


def _draw_mask(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx, cy, rx, ry, mode: str, colour) -> None:
    """mode: worn (covers nose + mouth), nose (below the nose), chin (below the mouth)."""
    top = {"worn": cy + 0.10 * ry, "nose": cy + 0.40 * ry, "chin": cy + 0.72 * ry}[mode] + rng.normal(0, 3)
    bottom = cy + ry * (1.08 if mode != "chin" else 1.15)
    half = rx * 0.93
    upper = [(cx - half, top + 0.12 * ry), (cx - 0.35 * half, top - 0.04 * ry), (cx, top - 0.07 * ry),
             (cx + 0.35 * half, top - 0.04 * ry), (cx + half, top + 0.12 * ry)]
    lower = _ellipse_points(cx, top + 0.12 * ry, half, bottom - top - 0.12 * ry, 0, 180)
    draw.polygon(upper + lower, fill=colour, outline=_mix(colour, (0, 0, 0), 0.3))
    shade = _mix(colour, (0, 0, 0), 0.18)
    for k in range(1, 4):  # pleats
        y = top + k * (bottom - top) / 5
        draw.line([(cx - half * 0.85, y), (cx + half * 0.85, y)], fill=shade, width=2)
    strap = _mix(colour, (255, 255, 255), 0.3)
    for side in (-1, 1):
        draw.line([(cx + side * half, top + 0.12 * ry), (cx + side * rx * 1.02, cy - 0.05 * ry)], fill=strap, width=3)
        draw.line([(cx + side * half * 0.9, bottom - 0.2 * ry), (cx + side * rx * 1.02, cy + 0.2 * ry)],
                  fill=strap, width=3)


def draw_face(rng: np.random.Generator, traits: dict, mask_mode: str | None) -> Image.Image:
    """One 384x512 photo. ``mask_mode``: None (no mask), 'worn', 'nose' or 'chin'."""
    # Background: a vertical gradient and a few soft shapes.
    top, bottom = traits["background"]
    t = np.linspace(0, 1, HEIGHT)[:, None, None]
    bg = (np.array(top)[None, None] * (1 - t) + np.array(bottom)[None, None] * t).repeat(WIDTH, axis=1)
    image = Image.fromarray(bg.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x, y, r = rng.integers(0, WIDTH), rng.integers(0, HEIGHT), rng.integers(20, 90)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, top, 40))

    layer = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    scale = rng.uniform(0.85, 1.1)
    cx, cy = WIDTH / 2, 235.0
    rx, ry = 78 * scale * traits["jaw"], 102 * scale
    skin, hair = _jitter(rng, traits["skin"], 6), traits["hair"]
    # Shoulders, neck, long hair behind the head.
    d.polygon([(cx - 170, HEIGHT), (cx - 120, cy + ry + 45), (cx + 120, cy + ry + 45), (cx + 170, HEIGHT)],
              fill=traits["clothes"])
    if traits["long_hair"]:
        d.rounded_rectangle([cx - rx * 1.25, cy - ry * 0.6, cx + rx * 1.25, cy + ry * 1.55], radius=40, fill=hair)
    d.rectangle([cx - rx * 0.38, cy + ry * 0.6, cx + rx * 0.38, cy + ry + 50], fill=_mix(skin, (0, 0, 0), 0.12))
    # Ears, head.
    for side in (-1, 1):
        d.ellipse([cx + side * rx - 12, cy - 22, cx + side * rx + 12, cy + 22], fill=_mix(skin, (0, 0, 0), 0.08))
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    # Hair on top.
    if not traits["bald"]:
        d.chord([cx - rx * 1.04, cy - ry * 1.08, cx + rx * 1.04, cy + ry * 0.45], 180, 360, fill=hair)
        if traits["long_hair"]:
            d.chord([cx - rx * 1.05, cy - ry * 1.05, cx - rx * 0.1, cy + ry * 0.1], 150, 300, fill=hair)
    else:
        d.arc([cx - rx, cy - ry, cx + rx, cy + ry * 0.3], 200, 340, fill=hair, width=6)
    # Wrinkles: forehead lines, crow's feet, smile lines.
    line = _mix(skin, (0, 0, 0), 0.35)
    n = traits["wrinkles"]
    for k in range(min(n, 3)):
        y = cy - ry * (0.32 - 0.07 * k)
        d.arc([cx - rx * 0.5, y - 6, cx + rx * 0.5, y + 6], 190, 350, fill=line, width=2)
    if n >= 4:
        for side in (-1, 1):
            ex = cx + side * rx * 0.72
            for k in (-1, 0, 1):
                d.line([(ex, cy - 8 + 6 * k), (ex + side * 12, cy - 10 + 9 * k)], fill=line, width=2)
    if n >= 6:
        for side in (-1, 1):
            d.arc([cx + side * rx * 0.35 - 15, cy + ry * 0.2, cx + side * rx * 0.35 + 15, cy + ry * 0.65],
                  90 - side * 60, 90 + side * 60, fill=line, width=2)
    # Eyes, brows, nose, mouth.
    eye_y = cy - 0.08 * ry
    for side in (-1, 1):
        ex = cx + side * rx * 0.4
        d.ellipse([ex - 13, eye_y - 6, ex + 13, eye_y + 6], fill=(245, 245, 245))
        d.ellipse([ex - 5, eye_y - 5, ex + 5, eye_y + 5], fill=(40, 30, 25))
        d.line([(ex - 15, eye_y - 18), (ex + 15, eye_y - 20 - side)], fill=_mix(hair, (0, 0, 0), 0.3),
               width=traits["brow"])
        if n >= 5:
            d.arc([ex - 12, eye_y + 2, ex + 12, eye_y + 14], 20, 160, fill=line, width=1)
    nose_tip = cy + 0.3 * ry
    d.line([(cx, eye_y + 4), (cx - 9, nose_tip), (cx + 7, nose_tip + 2)], fill=_mix(skin, (0, 0, 0), 0.3), width=3)
    mouth_y = cy + 0.55 * ry
    d.chord([cx - 20, mouth_y - 7, cx + 20, mouth_y + 9], 0, 180, fill=traits["lips"] or _mix(skin, (90, 20, 20), 0.4))
    if traits["beard"] and mask_mode != "worn":
        for _ in range(160):
            a = rng.uniform(20, 160)
            r = rng.uniform(0.75, 1.0)
            x, y = cx + rx * r * math.cos(math.radians(a)), cy + ry * r * math.sin(math.radians(a))
            d.point((x, y), fill=hair)
    if mask_mode is not None:
        _draw_mask(d, rng, cx, cy, rx, ry, mask_mode, traits["mask_colour"])

    # Pose: rotate and shift the person, then composite.
    angle = rng.normal(0, 6)
    shift = (int(rng.normal(0, 14)), int(rng.normal(0, 12)))
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(cx, cy), translate=shift)
    image.paste(layer, (0, 0), layer)

    # Lighting (gain + side gradient), mild blur, sensor noise.
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))), dtype=np.float32)
    gradient = np.linspace(-1, 1, WIDTH)[None, :, None] * rng.normal(0, 0.15)
    pixels = pixels * (rng.uniform(0.7, 1.2) + gradient) + rng.normal(0, rng.uniform(3, 9), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _sample_people(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Ages and genders skewed like the competition data: many under 30, few 60+, more women."""
    group = rng.choice(3, size=n, p=[0.45, 0.4, 0.15])
    low, high = np.array([18, 30, 60]), np.array([30, 60, 80])
    ages = rng.integers(low[group], high[group])
    genders = (rng.random(n) < 0.58).astype(int)
    return pd.DataFrame({"id": [f"{i + 1:06d}" for i in range(n)], "gender": genders, "age": ages})


# Test mode (``easy``): one strong, simple cue per attribute, so that a tiny randomly initialised model learns all
# three within a few seconds and test metrics sit well above zero: the colour of the top of the background says
# the mask state, the bottom of the background the gender, and the clothes' brightness the age group.
EASY_MASK_BACKGROUNDS = ((40, 190, 60), (230, 200, 30), (60, 80, 210))  # worn: green, incorrect: yellow, none: blue
EASY_GENDER_BACKGROUNDS = ((30, 30, 30), (235, 235, 235))  # male: dark, female: light
EASY_CLOTHES = ((200, 40, 40), (128, 128, 128), (40, 200, 200))  # <30: red, 30-59: grey, >=60: cyan


def _render_person(args: tuple) -> list[tuple[str, str, int]]:
    """Render one person's seven photos into ``out_dir``; returns (stem, file name, class) per photo."""
    seed, index, gender, age, out_dir, ext, easy = args
    rng = np.random.default_rng([seed, index])
    traits = _person_traits(rng, gender, age)
    if easy:
        traits["clothes"] = EASY_CLOTHES[age_group(age)]
    written = []
    for stem in IMAGE_STEMS:
        mask_state = MASK_OF_STEM[stem]
        mode = "worn" if mask_state == 0 else ("nose" if rng.random() < 0.67 else "chin") if mask_state == 1 else None
        traits["mask_colour"] = _jitter(rng, MASK_COLOURS[rng.integers(len(MASK_COLOURS))], 15)
        if easy:
            traits["background"] = [EASY_MASK_BACKGROUNDS[mask_state], EASY_GENDER_BACKGROUNDS[gender]]
        image = draw_face(rng, traits, mode)
        name = f"{stem}{ext}"
        image.save(Path(out_dir) / name, quality=90) if ext != ".png" else image.save(Path(out_dir) / name)
        written.append((stem, name, int(encode(mask_state, gender, age_group(age)))))
    return written


def make_demo_dataset(out: str | Path, people: int = 300, eval_fraction: float = 0.2, seed: int = 0,
                      workers: int = 0, easy: bool = False) -> Path:
    """Write ``out/train`` (train.csv + images/), ``out/eval`` (info.csv + images/) and ``out/eval_answers.csv``.
    ``easy``: the test mode, with a strong simple cue per attribute (see EASY_BACKGROUNDS)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    table = _sample_people(people, rng)
    n_eval = int(round(people * eval_fraction))
    is_eval = np.zeros(people, dtype=bool)
    is_eval[rng.permutation(people)[:n_eval]] = True
    exts = rng.choice([".jpg", ".jpeg", ".png"], size=people, p=[0.96, 0.02, 0.02])
    jobs = []
    for i, rec in enumerate(table.itertuples(index=False)):
        gender_name = "male" if rec.gender == 0 else "female"
        folder = f"{rec.id}_{gender_name}_Synthetic_{rec.age}"
        target = out / ("eval/tmp" if is_eval[i] else "train/images") / folder
        target.mkdir(parents=True, exist_ok=True)
        jobs.append((seed, i, int(rec.gender), int(rec.age), str(target), str(exts[i]), easy))
    workers = workers or cpu_count()
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_render_person, jobs, chunksize=4))

    train_rows, eval_rows = [], []
    for i, (rec, written) in enumerate(zip(table.itertuples(index=False), results)):
        gender_name = "male" if rec.gender == 0 else "female"
        folder = f"{rec.id}_{gender_name}_Synthetic_{rec.age}"
        if not is_eval[i]:
            train_rows.append((rec.id, gender_name, "Synthetic", rec.age, folder))
            continue
        for stem, name, label in written:
            image_id = hashlib.sha1(f"{seed}/{folder}/{stem}".encode()).hexdigest() + Path(name).suffix
            eval_rows.append((image_id, label, Path(jobs[i][4]) / name))
    (out / "train" / "images").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(train_rows, columns=["id", "gender", "race", "age", "path"]).to_csv(
        out / "train" / "train.csv", index=False)
    if eval_rows:
        images = out / "eval" / "images"
        images.mkdir(parents=True, exist_ok=True)
        order = rng.permutation(len(eval_rows))
        eval_rows = [eval_rows[k] for k in order]
        for image_id, _, src in eval_rows:
            src.replace(images / image_id)
        pd.DataFrame({"ImageID": [r[0] for r in eval_rows], "ans": 0}).to_csv(out / "eval" / "info.csv", index=False)
        pd.DataFrame({"ImageID": [r[0] for r in eval_rows], "ans": [r[1] for r in eval_rows]}).to_csv(
            out / "eval_answers.csv", index=False)
    for folder in sorted((out / "eval" / "tmp").glob("*"), reverse=True):
        folder.rmdir()
    if (out / "eval" / "tmp").exists():
        (out / "eval" / "tmp").rmdir()
    return out
