"""Framing robustness: letterbox resize, face-crop step (pluggable detector, fallback, cache), framing
augmentation presets, and the robustness framings + table used by benchmarks/robustness.py."""
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facemask.cli import main
from facemask.data.faces import HogDetector, face_box, get_detector, register_detector
from facemask.data.images import FILL, Decoding, build_cache, cache_faces, load_image
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


class FixedDetector:
    """Finds one 'face' at a fixed box, or none in photos whose top-left pixel is pure white."""

    def __call__(self, rgb):
        if (rgb[0, 0] == 255).all():
            return []
        return [(0.0, 0.0, 100.0, 100.0, 0.5), (30.0, 40.0, 70.0, 90.0, 1.0)]  # the best-scoring box wins


def fixed_detector():
    return FixedDetector()


register_detector("test-fixed", fixed_detector)


def _square_photo(path: Path, side: int = 120) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 120, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def test_letterbox_keeps_the_aspect_ratio_with_grey_bars(tmp_path):
    photo = _square_photo(tmp_path / "square.png")
    boxed = load_image(photo, (64, 48), Decoding(resize="letterbox"))
    assert boxed.shape == (64, 48, 3)
    assert (boxed[:8] == FILL).all() and (boxed[-8:] == FILL).all()  # 48x48 picture centred, 8-row bars
    np.testing.assert_array_equal(boxed[8:56], np.asarray(Image.open(photo).resize((48, 48), Image.BILINEAR)))
    stretched = load_image(photo, (64, 48))
    assert not (stretched[:8] == FILL).all()
    with pytest.raises(ConfigError, match="data.resize='squash'"):
        Decoding(resize="squash")
    with pytest.raises(ConfigError, match="data.face_fallback=0"):
        Decoding(face="hog", face_fallback=0)
    with pytest.raises(ConfigError, match="data.face_margin=-1"):
        Decoding(face="hog", face_margin=-1)


def test_face_crop_uses_the_largest_face_with_margin_and_falls_back_to_the_centre(tmp_path):
    photo = _square_photo(tmp_path / "square.png")
    rgb = load_image(photo)
    (left, top, right, bottom), found = face_box(rgb, FixedDetector(), aspect=4 / 3, margin=0.5, fallback=0.5)
    assert found and (left, top, right, bottom) == (10, 12, 90, 119)  # 40x50 face + 50% a side, grown to 3:4
    decoding = Decoding(face="test-fixed", face_margin=0.5)
    crop = Image.new("RGB", (80, 107), (FILL,) * 3)
    crop.paste(Image.fromarray(rgb), (-10, -12))
    np.testing.assert_array_equal(load_image(photo, (64, 48), decoding),
                                  np.asarray(crop.resize((48, 64), Image.BILINEAR, reducing_gap=None)))

    white = rgb.copy()
    white[0, 0] = 255
    Image.fromarray(white).save(tmp_path / "noface.png")
    box, found = face_box(white, FixedDetector(), aspect=4 / 3, margin=0.5, fallback=0.5)
    assert not found and box == (0, -27, 120, 133)  # a face half the photo wide, 44% down; margin; grown to 3:4


def test_face_crop_is_cached_with_the_faceless_files_listed(tmp_path):
    photos = [_square_photo(tmp_path / "a.png")]
    white = np.asarray(Image.open(photos[0])).copy()
    white[0, 0] = 255
    Image.fromarray(white).save(tmp_path / "b.png")
    photos.append(tmp_path / "b.png")
    files = [str(p) for p in photos]
    decoding = Decoding(face="test-fixed", resize="letterbox")
    pixels, bad = build_cache(files, (32, 24), tmp_path / "cache", workers=1, progress=False, decoding=decoding)
    assert not bad
    for row, file in enumerate(files):
        np.testing.assert_array_equal(pixels[row], load_image(file, (32, 24), decoding))
    assert cache_faces(files, (32, 24), tmp_path / "cache", progress=False, decoding=decoding) == [files[1]]
    plain, _ = build_cache(files, (32, 24), tmp_path / "cache", workers=1, progress=False)
    assert not np.array_equal(plain, pixels)  # the decoding is part of the cache key
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_detector_plugins_by_module_path_and_unknown_names_are_one_line_errors():
    from facemask.data.faces import trust_detector

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        with pytest.raises(ConfigError, match="--trust-run-code"):  # never imported unless the user allows it
            get_detector("test_framing:fixed_detector")
        trust_detector("test_framing:fixed_detector")
        detector = get_detector("test_framing:fixed_detector")
    finally:
        sys.path.remove(str(Path(__file__).parent))
    assert detector(np.zeros((10, 10, 3), np.uint8))[1][:4] == (30.0, 40.0, 70.0, 90.0)
    with pytest.raises(ConfigError, match="unknown option data.face_crop='retina'"):
        get_detector("retina")
    trust_detector("no_such_module_x:make")
    with pytest.raises(ConfigError, match="cannot import"):
        get_detector("no_such_module_x:make")


def test_each_thread_gets_its_own_face_detector():
    """dlib's detector is not thread-safe: `facemask serve` (and a web app calling facemask.load(...).predict from
    its threads) crashed when two threads scanned with one. Each thread builds its own, once."""
    mine = get_detector("hog")  # built here first, as facemask.load does before serving
    found = {}

    def build(name):
        found[name] = (get_detector("hog"), get_detector("hog"))

    threads = [threading.Thread(target=build, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found["a"][0] is found["a"][1] and found["b"][0] is found["b"][1]  # built once per thread
    assert len({id(mine), id(found["a"][0]), id(found["b"][0])}) == 3  # never shared between threads
    assert get_detector("hog") is mine


def test_hog_detector_runs_offline_and_returns_boxes_in_photo_pixels(demo_root):
    photo = next((demo_root / "train" / "images").glob("*/normal.*"))
    rgb = load_image(photo)
    boxes = HogDetector(threshold=-3.0)(rgb)  # a very low threshold: procedural faces score low but are found
    assert boxes, "HOG found nothing even at a very low threshold"
    left, top, right, bottom, _ = boxes[0]
    assert 0 <= left < right <= rgb.shape[1] + 50 and 0 <= top < bottom <= rgb.shape[0] + 50


def test_check_data_measures_the_face_detection_rate(demo_root, capsys):
    assert main(["check-data", str(demo_root / "train"), "--faces", "test-fixed", "-q"]) == 0
    out = capsys.readouterr().out
    assert "face found by test-fixed: 126/126 photos (100.0%)" in out and "by mask state: wear 100.0%" in out


@pytest.mark.parametrize("preset", ["framing", "resized_crop", "blur", "jpeg", "temperature", "lowres"])
def test_framing_presets_change_uint8_images_and_are_train_only(preset, demo_root):
    from facemask.config import AugConfig

    aug = AugConfig(blur_p=1.0, blur_sigma=[1.0, 1.0], jpeg_p=1.0, lowres_p=1.0, lowres_factor=[0.3, 0.3],
                    jpeg_quality=[20, 20])
    train, evaluation = build_transforms(preset, aug)
    photo = next((demo_root / "train" / "images").glob("*/mask1.*"))
    image = torch.from_numpy(load_image(photo, (64, 48))).permute(2, 0, 1)
    torch.manual_seed(3)
    out = train(image.clone())
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert not torch.equal(out, image)
    torch.manual_seed(3)
    assert torch.equal(train(image.clone()), out)  # randomness only from the (per-sample seeded) torch RNG
    assert torch.equal(evaluation(image), image)


def test_temperature_warms_or_cools():
    from facemask.data.transforms import ColourTemperature

    image = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    torch.manual_seed(0)
    t = (torch.rand(()) * 2 - 1) * 0.2
    torch.manual_seed(0)
    out = ColourTemperature(0.2)(image).float().mean((1, 2))
    assert out[1] == 100 and torch.isclose(out[0], 100 * (1 + t), atol=0.6) and torch.isclose(out[2], 100 * (1 - t),
                                                                                              atol=0.6)


def test_letterbox_and_face_crop_run_is_consistent_in_training_prediction_and_export(tiny_config, demo_root):
    from facemask.data.loaders import decoding_of
    from facemask.inference.predict import run_probs
    from facemask.runs import Run
    from facemask.training.trainer import fit

    cfg = tiny_config("data.resize=letterbox", "data.face_crop=test-fixed", "data.face_margin=0.6",
                      "data.augment=flip,framing,temperature")
    run = fit(cfg)
    assert pd.read_csv(run / "no_face.csv").empty  # the fixed detector finds a face in every demo photo
    files = sorted(str(p) for p in (demo_root / "eval" / "images").iterdir())[:6]
    cfg, model = Run.open(run).load_model()
    decoding = decoding_of(cfg)
    assert decoding == Decoding(resize="letterbox", face="test-fixed", face_margin=0.6)
    images = torch.stack([torch.from_numpy(load_image(f, (64, 48), decoding)).permute(2, 0, 1) for f in files])
    with torch.no_grad():
        manual = model(images).softmax(1).numpy()
    np.testing.assert_allclose(run_probs(run, files, progress=False), manual, atol=1e-5)
    plain = torch.stack([torch.from_numpy(load_image(f, (64, 48))).permute(2, 0, 1) for f in files])
    with torch.no_grad():
        assert not np.allclose(model(plain).softmax(1).numpy(), manual, atol=1e-4)
    assert main(["export", str(run)]) == 0
    assert json.loads((run / "model.json").read_text())["input"]["decoding"]["resize"] == "letterbox"


def test_robustness_framings_have_the_promised_shapes(demo_root, tmp_path):
    from facemask.evaluation.robustness import FRAMINGS, render

    photo = str(next((demo_root / "train" / "images").glob("*/normal.*")))
    height, width = load_image(photo).shape[:2]
    sizes = {}
    for name in FRAMINGS:
        (out,) = render([photo], name, tmp_path)
        sizes[name] = Image.open(out).size
    assert sizes["original"] == (width, height)
    assert sizes["tight_face"][0] == sizes["tight_face"][1] == round(0.7 * width)
    assert sizes["aspect_1:1"] == (width, width) and sizes["aspect_4:3"] == (width, round(width * 3 / 4))
    assert sizes["low_res_1/12"] == (round(width / 12), round(height / 12))
    assert sizes["corner"] == sizes["jpeg_q12"] == sizes["rotated_15"] == (width, height)
    corner = load_image(render([photo], "corner", tmp_path)[0]).astype(int)
    original = load_image(photo).astype(int)
    small = np.asarray(Image.fromarray(original.astype(np.uint8)).resize((width // 2, height // 2), Image.BILINEAR))
    assert np.abs(corner[height - height // 2:, width - width // 2:] - small).mean() < 6  # the face is in the corner
    q12 = load_image(render([photo], "jpeg_q12", tmp_path)[0]).astype(int)
    assert 1 < np.abs(q12 - original).mean() < 25


def test_coverage_says_which_framings_the_recipe_trains_on():
    from facemask.config import load_config
    from facemask.evaluation.robustness import FRAMINGS, coverage

    robust = load_config(ROOT / "configs" / "cpu.yaml")
    verdicts = {name: coverage(name, robust) for name in FRAMINGS}
    assert verdicts["jpeg_q12"].startswith("outside") and "[30, 90]" in verdicts["jpeg_q12"]
    assert verdicts["low_res_1/12"].startswith("outside") and verdicts["rotated_15"].startswith("outside")
    assert verdicts["corner"].startswith("outside") and verdicts["tight_face"].startswith("inside")
    wide = load_config(ROOT / "configs" / "cpu.yaml", ["aug.jpeg_quality=[10, 90]", "data.augment=flip,jpeg,affine",
                                                       "aug.degrees=20"])
    assert coverage("jpeg_q12", wide).startswith("inside") and coverage("rotated_15", wide).startswith("inside")


def test_robustness_benchmark_scores_the_eval_people_in_every_framing(tiny_config, demo_root, tmp_path, capsys):
    from facemask.training.trainer import fit

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import robustness
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    run = fit(tiny_config("data.resize=letterbox"))
    table = robustness.main([str(run), "--out", str(tmp_path / "rob"), "--framings", "original,tight_face,jpeg_q12",
                             "--eval", str(demo_root / "eval"), "--answers", str(demo_root / "eval_answers.csv")])
    assert list(table.framing) == ["original", "tight_face", "jpeg_q12"]
    assert table.mask_f1.between(0, 1).all() and table.loc[0, "mask_f1_change"] == 0
    assert table.training.iloc[2].startswith("outside")
    out = capsys.readouterr().out
    assert "worst mask-F1 change" in out and "42 photos of the eval people" in out
    saved = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert [row["framing"] for row in saved] == ["original", "tight_face", "jpeg_q12"]


def test_robustness_table_computes_f1_per_framing(tmp_path):
    from facemask.evaluation.robustness import robustness_table

    files = [str(_square_photo(tmp_path / f"{i}.png", 24)) for i in range(6)]
    labels = np.array([0, 6, 12, 0, 6, 12])

    def predict(rendered):  # perfect on the originals, always "mask worn" on re-framed photos
        return labels if rendered == files else np.zeros(len(rendered), int)

    table = robustness_table(predict, files, labels, tmp_path / "out", ["original", "tight_face"])
    assert table.loc[0, "macro_f1"] == 1.0 and table.loc[0, "mask_f1"] == 1.0
    assert table.loc[1, "mask_f1"] == pytest.approx(1 / 6)  # F1 0.5 for "worn", 0 for the other two
    assert table.loc[1, "mask_f1_change"] == pytest.approx(1 / 6 - 1)


@pytest.mark.parametrize("overrides, message", [
    (["data.augment=framing", "aug.framing_translate=1.5"], "preset 'framing'"),
    (["data.augment=resized_crop", "aug.crop_scale=[0.5]"], "aug.crop_scale"),
    (["data.augment=lowres", "aug.lowres_factor=[0.5]"], "aug.lowres_factor"),
    (["data.augment=jpeg", "aug.jpeg_quality=[0, 90]"], "preset 'jpeg'"),
    (["data.augment_on=gpu"], "data.augment_on='gpu'"),
    (["data.face_crop=retina"], "data.face_crop='retina'"),
    (["data.resize=fit"], "data.resize='fit'"),
])
def test_bad_framing_options_fail_before_any_work(tiny_config, tmp_path, overrides, message):
    from facemask.training.trainer import fit

    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        fit(tiny_config(*overrides))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing built or written
