"""Ensembles, TTA, saved probabilities, ONNX export/engine, submission validation, ensemble-search."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facemask.cli import main
from facemask.inference.ensemble import search_weights, simplex_grid
from facemask.inference.predict import combine, run_probs
from facemask.inference.tta import parse_tta
from facemask.submission import read_csv_file, validate_submission
from facemask.training.trainer import fit


@pytest.fixture(scope="module")
def two_runs(demo_root, tmp_path_factory):
    """Two runs that differ in model and input size, trained on the same people split."""
    from facemask.config import load_config

    out = tmp_path_factory.mktemp("inference")
    common = [f"data.root={demo_root / 'train'}", f"train.output_dir={out / 'runs'}",
              f"data.cache_dir={out / 'cache'}", "data.val_fraction=0.34", "train.epochs=2"]
    a = fit(load_config("configs/tiny.yaml", common + ["train.name=a"]))
    b = fit(load_config("configs/tiny.yaml", common + ["train.name=b", "model.name=test_resnet",
                                                        "data.height=56", "data.width=40", "optim.lr=3e-3"]))
    return a, b


def _eval_files(demo_root):
    info = pd.read_csv(demo_root / "eval" / "info.csv", dtype=str)
    return info, [str(demo_root / "eval" / "images" / i) for i in info.ImageID]


def test_soft_and_hard_ensembles_with_weights(two_runs, demo_root, tmp_path):
    info, files = _eval_files(demo_root)
    pa, pb = (run_probs(run, files, progress=False) for run in two_runs)
    out = tmp_path / "sub.csv"
    probs_out = tmp_path / "probs.csv"
    assert main(["predict", *map(str, two_runs), "--data", str(demo_root / "eval"), "--out", str(out),
                 "--weights", "3", "1", "--save-probs", str(probs_out), "-q"]) == 0
    saved = pd.read_csv(probs_out, dtype={"ImageID": str})
    expected = 0.75 * pa + 0.25 * pb
    np.testing.assert_allclose(saved[[f"p{i}" for i in range(18)]].to_numpy(), expected, atol=1e-6)
    submission = pd.read_csv(out, dtype={"ImageID": str})
    assert submission.ImageID.tolist() == info.ImageID.tolist()
    np.testing.assert_array_equal(submission.ans.to_numpy(), expected.argmax(1))
    assert main(["predict", *map(str, two_runs), "--data", str(demo_root / "eval"), "--out", str(out),
                 "--vote", "hard", "-q"]) == 0
    np.testing.assert_array_equal(pd.read_csv(out).ans.to_numpy(), combine([pa, pb], "hard").argmax(1))


def test_mask_weights_take_the_mask_from_one_run_and_gender_and_age_from_another(two_runs, demo_root, tmp_path):
    import shutil

    from facemask.data.labels import marginals

    info, files = _eval_files(demo_root)
    # run b, made sure of gender and age under "incorrect" only: its top joint class would overrule a's mask
    run_b = Path(shutil.copytree(two_runs[1], tmp_path / "b"))
    state = torch.load(run_b / "best.pt", weights_only=True)
    bias = next(k for k in state["model"] if k.startswith("head") and k.endswith("bias"))
    state["model"][bias][6] += 8.0
    torch.save(state, run_b / "best.pt")
    pa, pb = (run_probs(run, files, progress=False) for run in (two_runs[0], run_b))
    probs_out = tmp_path / "probs.csv"
    out = tmp_path / "sub.csv"
    assert main(["predict", str(two_runs[0]), str(run_b), "--data", str(demo_root / "eval"), "--out", str(out),
                 "--weights", "0", "1", "--mask-weights", "1", "0", "--save-probs", str(probs_out), "-q"]) == 0
    saved = pd.read_csv(probs_out, dtype={"ImageID": str})[[f"p{i}" for i in range(18)]].to_numpy()
    # the mask is run a's, gender and age given the mask are run b's
    np.testing.assert_allclose(marginals(saved)["mask"], marginals(pa)["mask"], atol=1e-5)
    grid_b, grid = pb.reshape(-1, 3, 6), saved.reshape(-1, 3, 6)
    np.testing.assert_allclose(grid / grid.sum(2, keepdims=True), grid_b / grid_b.sum(2, keepdims=True), atol=1e-5)
    submitted = pd.read_csv(out).ans.to_numpy()
    mask = pa.argmax(1) // 6
    np.testing.assert_array_equal(submitted // 6, mask)  # the mask answer is run a's own
    np.testing.assert_array_equal(submitted % 6, grid_b[np.arange(len(grid_b)), mask].argmax(1))  # the rest b's
    assert (saved.argmax(1) // 6 != mask).any()  # (where the top joint class would have said otherwise)
    # equal mask weights and weights are the ordinary soft vote
    np.testing.assert_allclose(combine([pa, pb], "soft", [1, 3], [1, 3]), combine([pa, pb], "soft", [1, 3]),
                               atol=1e-6)


@pytest.mark.parametrize("extra,message", [
    (["--mask-weights", "1"], "--mask-weights has 1 values for 2 runs"),
    (["--mask-weights", "1", "0", "--vote", "hard"], "--mask-weights needs --vote soft"),
    (["--mask-weights", "0", "0"], "--mask-weights must be finite, non-negative and not all zero"),
])
def test_mask_weights_are_checked_before_any_image_is_read(two_runs, demo_root, tmp_path, capsys, extra, message,
                                                          monkeypatch):
    import facemask.inference.predict as predict

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded or an image read")
    monkeypatch.setattr(predict, "open_engine", refuse)
    monkeypatch.setattr(predict, "engine_probs", refuse)
    assert main(["predict", *map(str, two_runs), "--data", str(demo_root / "eval"), "--out",
                 str(tmp_path / "sub.csv"), "-q", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sub.csv").exists()


def test_a_broken_second_run_fails_before_the_first_one_reads_an_image(two_runs, demo_root, tmp_path, capsys,
                                                                      monkeypatch):
    import shutil

    import facemask.inference.predict as predict

    broken = tmp_path / "broken"
    shutil.copytree(two_runs[1], broken)
    state = torch.load(broken / "best.pt", weights_only=True)
    state["config"]["aug"]["no_such_option"] = 1  # saved by a version with options this one does not know
    torch.save(state, broken / "best.pt")

    def refuse(*args, **kwargs):
        raise AssertionError("an image was read")
    monkeypatch.setattr(predict, "engine_probs", refuse)
    assert main(["predict", str(two_runs[0]), str(broken), "--data", str(demo_root / "eval"), "--out",
                 str(tmp_path / "sub.csv"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "saved config is invalid" in err and str(broken) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sub.csv").exists()


def test_with_mask_weights_the_mask_answer_is_never_overruled_by_the_other_runs():
    from facemask.inference.predict import answers

    mask_run = np.zeros((1, 18))
    mask_run[0, [0, 6, 12]] = [0.50, 0.45, 0.05]  # mask: worn 0.50, incorrect 0.45, not worn 0.05
    rest_run = np.full((1, 18), 0.1 / 15)
    rest_run[0, 6:9] = 0.3  # sure of gender and age only under "incorrect"
    runs = [rest_run, mask_run]
    assert combine(runs, "soft", [1, 0], [0, 1]).argmax(1)[0] // 6 == 1  # the top joint class says "incorrect"
    assert answers(runs, "soft", [1, 0], [0, 1])[0] // 6 == 0  # the answer keeps the mask run's "worn"
    assert answers(runs, "soft", [1, 3])[0] == combine(runs, "soft", [1, 3]).argmax(1)[0]  # without: the top class
    # a mask to which the gender-and-age runs give no probability at all still gets the mask run's probability
    one_hot = [np.eye(18)[[0]], np.eye(18)[[12]]]
    mixed = combine(one_hot, "soft", [1, 0], [0, 1])
    assert np.isfinite(mixed).all() and mixed.sum() == pytest.approx(1)
    assert answers(one_hot, "soft", [1, 0], [0, 1])[0] // 6 == 2


def test_hard_vote_majority_and_tie_break():
    one_hot = np.eye(18)
    a = 0.6 * one_hot[[1, 2]] + 0.4 / 18
    b = 0.9 * one_hot[[1, 3]] + 0.1 / 18
    c = 0.5 * one_hot[[4, 5]] + 0.5 / 18
    scores = combine([a, b, c], "hard")
    assert scores.argmax(1)[0] == 1  # two votes beat one
    assert scores.argmax(1)[1] == 3  # one vote each: the most confident run's class wins the tie
    assert combine([a, b, c], "hard", [1, 1, 3]).argmax(1)[0] == 4  # weights count as votes


def test_tta_flip_averages_original_and_mirrored(two_runs, demo_root):
    from facemask.data.images import load_image
    from facemask.runs import Run

    run = two_runs[0]
    _, files = _eval_files(demo_root)
    files = files[:4]
    with_tta = run_probs(run, files, tta="flip", progress=False)
    cfg, model = Run.open(run).load_model()
    images = torch.stack([torch.from_numpy(load_image(f, (cfg.data.height, cfg.data.width))).permute(2, 0, 1)
                          for f in files])
    with torch.no_grad():
        manual = (model(images).softmax(1) + model(torch.flip(images, dims=[-1])).softmax(1)) / 2
    np.testing.assert_allclose(with_tta, manual.numpy(), atol=1e-5)
    assert not np.allclose(with_tta, run_probs(run, files, progress=False), atol=1e-5)
    assert [name for name, _ in parse_tta("flip,scale:1.2,zoom:0.9")] == ["original", "flip", "scale:1.2",
                                                                            "zoom:0.9"]
    assert run_probs(run, files, tta="scale:1.25,zoom:0.8", progress=False).shape == (4, 18)


@pytest.mark.parametrize("spec", ["spin", "scale:-1", "zoom:2", "flip:3"])
def test_bad_tta_names_the_view(spec):
    from facemask.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown TTA view"):
        parse_tta(spec)


def test_onnx_agrees_with_pytorch(two_runs, demo_root, tmp_path):
    run = two_runs[0]
    assert main(["export", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["input"]["height"] == 64 and meta["input"]["range"] == [0, 255] and len(meta["output"]["classes"]) == 18
    _, files = _eval_files(demo_root)
    torch_probs = run_probs(run, files, tta="flip", progress=False)
    onnx_probs = run_probs(run, files, tta="flip", engine="onnx", progress=False)
    assert np.abs(torch_probs - onnx_probs).max() < 1e-4
    subs = []
    for engine in ("torch", "onnx"):
        out = tmp_path / f"{engine}.csv"
        assert main(["predict", str(run), "--data", str(demo_root / "eval"), "--out", str(out), "--engine", engine,
                     "--tta", "flip", "-q"]) == 0
        subs.append(read_csv_file(out))
    pd.testing.assert_frame_equal(*subs)


def test_onnx_engine_without_export_is_a_clear_error(two_runs, demo_root, tmp_path, capsys):
    code = main(["predict", str(two_runs[1]), "--data", str(demo_root / "eval"), "--out", str(tmp_path / "x.csv"),
                 "--engine", "onnx", "-q"])
    assert code == 2 and "facemask export" in capsys.readouterr().err


def test_validate_reports_each_problem(demo_root, tmp_path, capsys):
    info = pd.read_csv(demo_root / "eval" / "info.csv", dtype=str)
    good = info.assign(ans=3)
    assert validate_submission(good, info) == []
    swapped = good.iloc[[1, 0, *range(2, len(good))]]
    assert "not in info.csv's order (row 1" in validate_submission(swapped, info)[0]
    short = good.iloc[1:]
    problems = validate_submission(short, info)
    assert any("rows, info.csv has" in p for p in problems) and any("are missing" in p for p in problems)
    bad_label = good.assign(ans=[18] + [0] * (len(good) - 1))
    assert "ans '18' (row 1) is not a class 0..17" in validate_submission(bad_label, info)[0]
    renamed = good.assign(ImageID=["x.jpg"] + good.ImageID.tolist()[1:])
    assert any("not in info.csv, e.g. x.jpg" in p for p in validate_submission(renamed, info))
    path = tmp_path / "s.csv"
    bad_label.to_csv(path, index=False)
    assert main(["validate", str(path), "--info", str(demo_root / "eval" / "info.csv")]) == 1
    assert "is not a class" in capsys.readouterr().out


def test_weight_search_finds_the_weighting_that_helps():
    assert len(simplex_grid(3, 0.5)) == 6 and all(abs(w.sum() - 1) < 1e-9 for w in simplex_grid(3, 0.1))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 18, 400)
    good = np.eye(18)[np.where(rng.random(400) < 0.8, labels, rng.integers(0, 18, 400))] * 0.5 + 0.5 / 18
    noise = rng.dirichlet(np.ones(18), 400)
    weights, f1 = search_weights([noise, good], labels)
    assert weights[1] > weights[0]
    from facemask.evaluation.metrics import macro_f1

    assert f1 >= max(macro_f1(labels, good.argmax(1)), macro_f1(labels, noise.argmax(1)))


def test_ensemble_search_cli(two_runs, tmp_path, capsys):
    out = tmp_path / "ens.json"
    assert main(["ensemble-search", *map(str, two_runs), "--out", str(out), "-q"]) == 0
    result = json.loads(out.read_text())
    assert abs(sum(result["weights"]) - 1) < 1e-9 and len(result["single_macro_f1"]) == 2
    assert result["gain_over_best_single"] == pytest.approx(result["ensemble_macro_f1"] -
                                                            max(result["single_macro_f1"]))
    assert result["gain_over_best_single"] >= 0
    assert len(result["cv_gains"]) == 2 and result["cv_gain"] == pytest.approx(np.mean(result["cv_gains"]))
    assert sum(result["cv_people"]) == result["people"]  # the halves split people, not images
    out = capsys.readouterr().out
    assert "in-sample gain over the best single run" in out and "cross-validated gain" in out
