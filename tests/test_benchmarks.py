"""The benchmarks' own definitions: what they compare must be like with like."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import age_ceiling  # noqa: E402
import bare_face  # noqa: E402
import detection  # noqa: E402
import face_embedding  # noqa: E402
import inference  # noqa: E402
import time_to_f1  # noqa: E402
import unseen_masks  # noqa: E402

from facemask.config import ModelConfig  # noqa: E402
from facemask.models.factory import create_model  # noqa: E402


def test_the_prediction_compute_limit_runs_the_model_in_eval_mode():
    model = create_model(ModelConfig(name="test_efficientnet", pretrained="none")).train()
    step = inference.torch_variant(model, torch.zeros(2, 3, 32, 24), channels_last=True, bf16=False)
    step()
    assert model.training is False  # BatchNorm with running statistics, as facemask predict runs it


def test_time_to_quality_targets_the_baselines_best_epoch_not_its_last():
    base = [(100.0, 0.30), (200.0, 0.39), (300.0, 0.37)]  # the baseline dips in its last epoch
    ours = [(110.0, 0.23), (190.0, 0.31), (270.0, 0.53)]
    result = time_to_f1.time_to_target(ours, base)
    assert result["target"] == 0.39 and result["baseline_epoch"] == 2 and result["baseline_seconds"] == 200.0
    assert result["facemask_epoch"] == 3 and result["ratio"] == pytest.approx(270 / 200)
    assert time_to_f1.time_to_target([(50.0, 0.1)], base)["ratio"] is None


def test_unseen_masks_scores_the_mask_attribute_and_summarises_each_split_over_seeds():
    import numpy as np
    import pandas as pd

    labels = np.array([0, 3, 6, 9, 12, 15])  # classes of worn, worn, incorrect, incorrect, bare, bare
    guesses = np.array([6, 0, 6, 12, 12, 14])  # mask states: incorrect, worn, incorrect, bare, bare, bare
    scores = unseen_masks.unseen_scores(labels, guesses)
    assert scores["recall_wear"] == 0.5 and scores["recall_incorrect"] == 0.5 and scores["recall_not_wear"] == 1.0
    from sklearn.metrics import f1_score
    assert scores["mask_f1"] == pytest.approx(f1_score([0, 0, 1, 1, 2, 2], [1, 0, 1, 2, 2, 2], average="macro"))
    nose_out = np.array([True, True, True, False, True, True])  # the second incorrect one's nose is covered
    assert unseen_masks.unseen_scores(labels, guesses, nose_out)["recall_incorrect_nose_out"] == 1.0
    assert unseen_masks.unseen_scores(labels, guesses, ~nose_out)["recall_incorrect_nose_out"] == 0.0
    rows = [{"split": "a->b", "recipe": "r", "seed": seed, "mask_f1": f1, "recall_wear": 0.5, "recall_incorrect": 0.5,
             "recall_not_wear": 1.0, "recall_incorrect_nose_out": 1.0} for seed, f1 in ((1, 0.4), (2, 0.6))]
    rows.append({**rows[0], "split": "b->a", "mask_f1": 0.9})
    summary = unseen_masks.seed_summary(pd.DataFrame(rows))
    assert summary.loc[("a->b", "r"), "mask_f1"] == "0.500 (0.141)"  # mean and sample sd of 0.4 and 0.6
    assert summary.loc[("b->a", "r"), "mask_f1"] == "0.900 (nan)"  # one seed: no spread, and no other split mixed in


def test_unseen_masks_takes_training_seeds_from_train_seeds_only():
    with pytest.raises(SystemExit):  # before any rendering or training: train.seed= would make every "seed" one run
        unseen_masks.main(["--kit", "no-such-kit", "train.seed=3"])


def test_unseen_masks_checks_mask_from_before_any_rendering():
    for configs in (["configs/cpu.yaml", "configs/tiny.yaml"], ["configs/cpu.yaml"]):
        with pytest.raises(SystemExit):  # not a recipe of --configs, or nothing to combine it with
            unseen_masks.main(["--kit", "no-such-kit", "--configs", *configs, "--mask-from",
                               "other" if len(configs) == 2 else "cpu"])


def test_unseen_masks_takes_the_mask_from_the_mean_of_the_named_recipes():
    import numpy as np

    rng = np.random.default_rng(0)
    probs = {name: rng.dirichlet(np.ones(18) * 0.3, size=200) for name in ("cpu", "f_5", "ld7")}
    combined = unseen_masks.with_mask_from(probs, ["f_5", "ld7"])
    assert list(combined) == ["cpu, mask from f_5+ld7"]
    ((stem, guesses),) = combined.values()
    mask = ((probs["f_5"] + probs["ld7"]) / 2).argmax(1) // 6
    assert stem == "cpu" and (guesses // 6 == mask).all()  # the mask answer is the sources' own soft vote's
    own = probs["cpu"].reshape(200, 3, 6)
    assert (guesses % 6 == own[np.arange(200), mask].argmax(1)).all()  # gender and age: cpu's, given that mask
    assert (guesses // 6 != probs["cpu"].argmax(1) // 6).any()  # (not what cpu alone would answer)


def test_unseen_masks_reuses_only_a_run_trained_with_the_same_config(demo_root, tmp_path):
    from facemask.config import load_config
    from facemask.training.trainer import fit

    def cfg(*extra):
        return load_config("configs/tiny.yaml", [f"data.root={demo_root / 'train'}", "train.epochs=1",
                                                 f"train.output_dir={tmp_path / 'runs'}", "train.name=tiny-x",
                                                 f"data.cache_dir={tmp_path / 'cache'}", *extra])
    assert unseen_masks.trained_run(cfg(), tmp_path / "runs") is None
    run = fit(cfg())
    assert unseen_masks.trained_run(cfg(), tmp_path / "runs") == run
    assert unseen_masks.trained_run(cfg("train.seed=7"), tmp_path / "runs") is None  # another seed is another run
    assert unseen_masks.trained_run(cfg("optim.layer_decay=0.7"), tmp_path / "runs") is None
    (run / "eval.json").unlink()  # a run killed before training ended is never reused
    assert unseen_masks.trained_run(cfg(), tmp_path / "runs") is None


def test_bare_face_distance_is_to_the_nearest_bare_face_of_another_person_within_reach():
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(3, 8, 4, 3, generator=generator), dim=1)
    assert np.allclose(bare_face.bare_face_distance(bank[1:2], bank), 0.0, atol=1e-6)  # a bare face itself
    bank_people = np.array(["a", "b", "c"])
    left_out = bare_face.bare_face_distance(bank, bank, np.array(["a", "b", "c"]), bank_people, chunk=2)
    assert (left_out > 0.01).all()  # each measured against the other people's bare faces only, in every chunk
    others = bare_face.bare_face_distance(bank, bank, np.array(["a", "x", "c"]), bank_people, chunk=2)
    assert np.allclose(others[1], 0.0, atol=1e-6) and (others[[0, 2]] > 0.01).all()  # "x" may match b's
    shifted = torch.roll(bank[0:1], shifts=1, dims=3)  # moved one cell to the right
    assert np.allclose(bare_face.bare_face_distance(shifted, bank, reach=1).reshape(4, 3)[:, 1:], 0.0, atol=1e-6)
    assert (bare_face.bare_face_distance(shifted, bank, reach=0).reshape(4, 3)[:, 1:] > 0.01).all()


def test_bare_face_answers_the_mask_on_the_demo_data(demo_root, tiny_config, tmp_path, monkeypatch):
    import pandas as pd

    from facemask.training.trainer import fit

    covers, real_cover = [], bare_face.with_bare_face_cover
    monkeypatch.setattr(bare_face, "with_bare_face_cover", lambda p, b: covers.append(real_cover(p, b)) or covers[-1])
    run = fit(tiny_config())
    table = bare_face.main(["--train", str(demo_root / "train"), "--eval", str(demo_root / "eval"), "--runs",
                            str(run), "--config", str(bare_face.ROOT / "configs" / "tiny.yaml"), "--fit-photos",
                            "100", "--out", str(tmp_path / "bare.csv"), f"data.cache_dir={tmp_path / 'cache'}"])
    assert list(table["answer"]) == ["bare face", f"run {run.name}", f"run {run.name} x bare face",
                                     f"run {run.name} x bare face, cover only"]
    assert (tmp_path / "bare.csv").is_file()
    assert table.loc[0, "mask_f1"] > 0.6 and table.loc[0, "recall_not_wear"] >= 0.5  # it learned bare faces
    # one epoch of the tiny model barely knows the mask: the bare face's view lifts the product above it
    assert table.loc[2, "mask_f1"] > table.loc[1, "mask_f1"] and 0 < table.loc[2, "macro_f1"] <= 1
    # the "cover only" row is scored from with_bare_face_cover's answer
    from facemask.data.labels import attribute_of
    from facemask.data.layout import scan_eval

    _, eval_table, _ = scan_eval(demo_root / "eval")
    answers = pd.read_csv(demo_root / "eval_answers.csv", dtype={"ImageID": str}).set_index("ImageID")["ans"]
    truth = attribute_of(answers.loc[list(eval_table["image_id"])].to_numpy(), "mask")
    assert len(covers) == 1
    expected = unseen_masks.unseen_scores(answers.loc[list(eval_table["image_id"])].to_numpy(), covers[0].argmax(1))
    assert table.loc[3, list(expected)].to_dict() == pytest.approx(expected)
    assert table.loc[3, "recall_not_wear"] == pytest.approx((attribute_of(covers[0].argmax(1), "mask")[truth == 2]
                                                             == 2).mean())


def test_bare_face_checks_its_inputs_before_decoding_an_image(demo_root, tmp_path, capsys):
    args = ["--train", str(demo_root / "train"), "--eval", str(demo_root / "eval"), "--config",
            str(bare_face.ROOT / "configs" / "tiny.yaml"), f"data.cache_dir={tmp_path / 'cache'}"]
    answers = tmp_path / "answers.csv"
    answers.write_text("ImageID,ans\nnot-an-eval-image.jpg,0\n")
    for extra, message in ((["--fit-photos", "0"], "--fit-photos 0"), (["--tta", "spin"], "spin"),
                           (["--runs", str(tmp_path)], "best.pt"), (["--answers", str(answers)], "no answer for"),
                           (["data.cache=false"], "data.cache=false")):
        with pytest.raises(SystemExit) as exit_info:
            bare_face.main(args + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing was decoded


def test_bare_face_refuses_training_photos_without_bare_faces_in_one_line(demo_copy, tmp_path, capsys):
    for folder in (demo_copy / "train" / "images").iterdir():
        for photo in folder.glob("normal.*"):
            photo.unlink()  # no bare faces left to compare with
    with pytest.raises(SystemExit) as exit_info:
        bare_face.main(["--train", str(demo_copy / "train"), "--eval", str(demo_copy / "eval"), "--config",
                        str(bare_face.ROOT / "configs" / "tiny.yaml"), f"data.cache_dir={tmp_path / 'cache'}"])
    assert exit_info.value.code == 2 and "image normal is missing" in capsys.readouterr().err  # the layout's check
    assert not (tmp_path / "cache").exists()


def test_bare_face_weighs_each_class_by_the_bare_face_probability_of_its_mask():
    import numpy as np

    p_run = np.full((2, 18), 0.01)
    p_run[:, 2] = 0.5  # worn (class 2) is the run's top class
    p_run[:, 8] = 0.3  # incorrect (class 8) its second
    p_bare = np.array([[1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]])
    answers = bare_face.with_bare_face(p_run, p_bare).argmax(1)
    assert list(answers) == [2, 8]  # no view from the bare face: the run's; a bare-face "incorrect" outweighs it


def test_bare_face_cover_only_leaves_worn_against_incorrect_to_the_run():
    import numpy as np

    p_run = np.full((3, 18), 0.01)
    p_run[:, 2] = 0.5  # worn (class 2) is the run's top class
    p_run[:, 8] = 0.3  # incorrect (class 8) its second
    p_run[:, 13] = 0.2  # not worn (class 13) its third
    p_bare = np.array([[0.1, 0.8, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]])
    scores = bare_face.with_bare_face_cover(p_run, p_bare)
    # a bare-face "incorrect" does not move the run's worn; a bare-face "not worn" does; the rows stay distributions
    assert list(scores.argmax(1)) == [2, 13, 2] and np.allclose(scores.sum(1), 1)
    covered = np.arange(18) // 6 < 2
    assert np.allclose(scores[:, covered].sum(1), 1 - p_bare[:, 2])
    assert np.allclose(scores[0, covered] / scores[0, covered].sum(), p_run[0, covered] / p_run[0, covered].sum())
    # a run that gives the bare classes no mass at all: the bare face's "not worn" still counts, with the run's
    # gender and age over all mask states
    p_zero = np.zeros((1, 18))
    p_zero[0, 2], p_zero[0, 4] = 0.7, 0.3  # worn: male 60+ (class 2), female 30-59 (class 4)
    scores = bare_face.with_bare_face_cover(p_zero, np.array([[0.05, 0.05, 0.9]]))
    assert scores.argmax() == 14 and np.allclose(scores.sum(), 1)  # not worn, male 60+


def test_age_ceiling_simulates_an_estimator_of_the_given_error():
    import numpy as np

    ages = np.random.default_rng(0).integers(18, 90, 20000).astype(float)
    for noise in age_ceiling.NOISES:
        for mae in (1.0, 4.0):
            error = age_ceiling.estimated_ages(ages, mae, noise, np.random.default_rng(1)) - ages
            assert np.abs(error).mean() == pytest.approx(mae, rel=0.03)
        f1s = [age_ceiling.simulated_age_f1(ages, mae, noise, draws=2, seed=0) for mae in (0, 2, 4, 8)]
        assert f1s[0] == 1.0 and f1s[0] > f1s[1] > f1s[2] > f1s[3] > 0.3
    from facemask.data.labels import age_group, encode

    labels = encode(np.arange(len(ages)) % 3, np.arange(len(ages)) % 2, age_group(ages))
    perfect = [age_ceiling.simulated_macro_f1(labels, labels, ages, mae, "laplace", 2, 0) for mae in (0, 4)]
    assert perfect[0] == 1.0 and perfect[1] < 0.95  # the mask and gender stay right, the age errs
    assert age_ceiling.equivalent_mae([0, 2, 4], [1.0, 0.9, 0.7], 0.8) == pytest.approx(3.0)
    assert age_ceiling.equivalent_mae([0, 2, 4], [1.0, 0.9, 0.7], 0.6) is None
    # a simulated curve that rises a little between two MAEs is read as flat there
    assert age_ceiling.equivalent_mae([0, 2, 4, 6], [1.0, 0.8, 0.81, 0.6], 0.805) == pytest.approx(1.95)


@pytest.mark.parametrize("cache", ["true", "false"])
def test_age_ceiling_scores_a_multi_age_runs_own_answers_and_its_exact_age(demo_root, tiny_config, cache):
    import numpy as np
    import pandas as pd

    from facemask.data.images import load_image
    from facemask.data.labels import age_group, decode, encode
    from facemask.data.layout import read_train
    from facemask.data.loaders import decoding_of
    from facemask.evaluation.metrics import macro_f1
    from facemask.runs import Run
    from facemask.training.trainer import fit

    run = fit(tiny_config("model.head=multi_age", "train.epochs=3", f"data.cache={cache}"))
    curve, runs = age_ceiling.main(["--data", str(demo_root / "train"), "--runs", str(run), "--maes", "0", "3",
                                    "100", "--draws", "2"])
    val = pd.read_csv(run / "val_predictions.csv", dtype={"person": str})
    ages = val["person"].map(read_train(demo_root / "train").groupby("person")["age"].first()).to_numpy()
    mask, gender, own_age = decode(val["pred"].to_numpy())
    row = runs.iloc[0]
    assert row["macro_f1"] == pytest.approx(macro_f1(val["label"], val["pred"]))
    assert row["age_f1"] == pytest.approx(macro_f1(age_group(ages), own_age))
    assert curve.loc[0, f"{run.name} macro_f1"] == pytest.approx(
        macro_f1(val["label"], encode(mask, gender, age_group(ages))))
    assert list(curve["mae"]) == [0, 3, 100] and curve.loc[0, "age_f1"] == 1.0 and curve.loc[1, "age_f1"] < 1.0
    # the equivalent MAE is read off the curve of the run's own validation people
    val_curve = [age_ceiling.simulated_age_f1(ages, mae, "laplace", 2, 0) for mae in (0, 3, 100)]
    assert list(curve[f"{run.name} age_f1"]) == pytest.approx(val_curve)
    expected = age_ceiling.equivalent_mae([0, 3, 100], val_curve, row["age_f1"])
    assert row["equivalent_mae"] is not None and row["equivalent_mae"] == pytest.approx(expected)
    # the exact-age estimate, computed here the other way: each photo decoded on its own, the head asked for its
    # age distribution (the head in training mode returns it after the 18 classes; its dropout stays off)
    cfg, model = Run.open(run).load_model("cpu")
    model.eval()
    model.head.training = True
    images = torch.stack([torch.from_numpy(load_image(f, (cfg.data.height, cfg.data.width), decoding_of(cfg)))
                          for f in val["file"]]).permute(0, 3, 1, 2)
    with torch.no_grad():
        distribution = model(images)[:, 18:].exp()
    median = (distribution.cumsum(1) < 0.5).sum(1).numpy()
    assert row["exact_age_mae"] == pytest.approx(np.abs(median - ages).mean())
    assert row["exact_age_f1"] == pytest.approx(macro_f1(age_group(ages), age_group(median)))
    assert row["simulated_f1_at_that_mae"] == pytest.approx(
        age_ceiling.simulated_age_f1(ages, row["exact_age_mae"], "laplace", 2, 0))


def test_age_ceiling_checks_its_inputs_in_one_line(demo_root, demo_copy, tiny_config, tmp_path, capsys):
    import pandas as pd

    from facemask.training.trainer import fit

    run = fit(tiny_config())
    lonely = demo_copy / "train" / "train.csv"
    lonely.write_text(lonely.read_text().splitlines()[0] + "\n" + lonely.read_text().splitlines()[1] + "\n")
    data = ["--data", str(demo_root / "train")]
    for args, message in ((data + ["--maes", "2", "-1"], "--maes -1"), (data + ["--draws", "0"], "--draws 0"),
                          (["--data", str(tmp_path)], "train.csv: not found"),
                          (data + ["--runs", str(tmp_path)], "best.pt"),
                          (["--data", str(demo_copy / "train"), "--runs", str(run)], "is not in --data")):
        with pytest.raises(SystemExit) as exit_info:
            age_ceiling.main(args)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    predictions = pd.read_csv(run / "val_predictions.csv", dtype={"person": str})
    for table, message in ((predictions.drop(columns="pred"), "no column 'pred'"),
                           (predictions.assign(file=predictions["file"].str.replace(".", "-gone.", regex=False)),
                            "-gone.")):
        table.to_csv(run / "val_predictions.csv", index=False)
        with pytest.raises(SystemExit) as exit_info:
            age_ceiling.main(data + ["--runs", str(run)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    (run / "val_predictions.csv").unlink()
    for args, message in ((["--runs", str(run)], "val_predictions.csv not found"),
                          (["--runs", str(run), str(run)], "two runs named")):
        with pytest.raises(SystemExit) as exit_info:
            age_ceiling.main(data + args)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def _pixel_embedding(calls):
    """A stand-in for dlib's embedding in tests: the photo's colours, 8x6 pixels (the demo's easy cues)."""
    import numpy as np
    from PIL import Image

    def embed(files, workers):
        calls.append(list(files))
        return np.stack([np.asarray(Image.open(f).convert("RGB").resize((6, 8)), dtype=float).ravel() / 255
                         for f in files])
    return embed


def test_face_embedding_weighs_each_class_by_the_embeddings_gender_and_age():
    import numpy as np

    p_run = np.full((1, 18), 1 / 18)
    p_gender, p_age = np.array([[0.2, 0.8]]), np.array([[0.1, 0.3, 0.6]])
    scores = face_embedding.with_embedding(p_run, p_gender, p_age, 1.0, 0.5)
    for label in range(18):
        gender, age = (label % 6) // 3, label % 3
        assert scores[0, label] == pytest.approx(p_gender[0, gender] * p_age[0, age] ** 0.5 / 18)
    assert face_embedding.with_embedding(p_run, p_gender, p_age, 0, 0) == pytest.approx(p_run)


def test_face_embedding_lifts_a_tiny_run_with_the_gender_and_age_it_learns(demo_root, tiny_config, tmp_path,
                                                                        monkeypatch):
    import numpy as np
    import pandas as pd

    from facemask.data.layout import scan_eval
    from facemask.evaluation.metrics import classification_metrics, macro_f1
    from facemask.inference.predict import run_probs
    from facemask.runs import Run
    from facemask.training.trainer import fit

    calls, fitted = [], []
    embedding = _pixel_embedding(calls)
    monkeypatch.setitem(face_embedding.EMBEDDINGS, "pixels", embedding)
    real_fit = face_embedding.fit_attributes
    monkeypatch.setattr(face_embedding, "fit_attributes", lambda v, labels, c: fitted.append(v) or real_fit(
        v, labels, c))
    run = fit(tiny_config())
    own_val = pd.read_csv(run / "val_predictions.csv", dtype={"person": str})
    # a run trained with data.root spelt another way (here with a /./ in it) names the same photos
    own_val.assign(file=own_val["file"].str.replace("/images/", "/./images/")).to_csv(run / "val_predictions.csv",
                                                                                     index=False)
    # the answers in another order than info.csv's: they are matched by ImageID
    answers = pd.read_csv(demo_root / "eval_answers.csv", dtype={"ImageID": str}).iloc[::-1]
    answers.to_csv(tmp_path / "answers.csv", index=False)
    monkeypatch.chdir(demo_root)  # --train and --eval spelt relative to here; the run's paths are absolute
    args = ["--train", "train", "--eval", "eval", "--answers", str(tmp_path / "answers.csv"), "--runs", str(run),
            "--embedding", "pixels", "--workers", "1", "--cache-dir", str(tmp_path / "emb"), "--cs", "0.01", "1"]
    table = face_embedding.main(args)
    assert list(table["answer"].str.split(",").str[0]) == ["pixels embedding alone (gender", "run",
                                                           "run x embedding", "run x embedding"]
    assert "(chosen on validation)" in table["answer"][2] and "weights 0.5 0.5 (fixed)" in table["answer"][3]
    assert table.loc[0, "gender_f1"] > 0.8 and table.loc[0, "age_f1"] > 0.8  # the easy cues, learnt
    # ... on the validation photos too: their embeddings are the ones of their own files
    assert table.loc[0, "val_gender_f1"] > 0.8 and table.loc[0, "val_age_f1"] > 0.8
    # the run's row is the run's own answer on the eval photos; the embedding's gender and age lift it
    _, eval_table, _ = scan_eval(demo_root / "eval")
    labels = answers.set_index("ImageID")["ans"].loc[list(eval_table["image_id"])].to_numpy()
    own = classification_metrics(labels, run_probs(run, list(eval_table["file"]), progress=False).argmax(1))
    assert table.loc[1, "macro_f1"] == pytest.approx(own["macro_f1"])
    assert table.loc[2, "macro_f1"] > table.loc[1, "macro_f1"] + 0.1
    # the choice on validation: at least as good there as the run alone (weights 0 0 are in the grid) and as the
    # fixed row (C 0.01, weights 0.5 0.5 are in the grid)
    assert table.loc[2, "val_macro_f1"] >= max(table.loc[1, "val_macro_f1"], table.loc[3, "val_macro_f1"])
    # the run's own answers on its validation photos (no --tta here): those it saved when it trained
    assert table.loc[1, "val_macro_f1"] == pytest.approx(macro_f1(own_val["label"], own_val["pred"]))
    # the regressions learnt from the people outside the run's validation people only (one fit per C)
    split = Run.open(run).split()
    val_people = set(split.loc[split["side"] == "val", "person"])
    val_files = [f for f in sorted((demo_root / "train" / "images").glob("*/*")) if f.parent.name[:6] in val_people]
    val_vectors = {tuple(v) for v in embedding(val_files, 1)}
    assert len(fitted) == 2 and all(len(v) == (len(split) - len(val_people)) * 7 for v in fitted)
    assert not val_vectors & {tuple(v) for v in fitted[0]}
    # the embeddings are kept: a second run embeds nothing and prints the same table
    assert len(calls) == 3  # training, eval, and the validation photos embedded here
    again = face_embedding.main(args)
    assert len(calls) == 3 and np.allclose(again.select_dtypes("number").fillna(-1),
                                           table.select_dtypes("number").fillna(-1))


def test_face_embedding_keeps_embeddings_until_a_photo_changes(tmp_path, monkeypatch):
    from PIL import Image

    calls = []
    monkeypatch.setitem(face_embedding.EMBEDDINGS, "pixels", _pixel_embedding(calls))
    files = []
    for i in range(3):
        Image.new("RGB", (12, 16), (40 * i, 90, 200)).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    first, how = face_embedding.embed(files, "pixels", 1, tmp_path / "cache")
    assert how.startswith("computed") and len(calls) == 1
    again, how = face_embedding.embed(files, "pixels", 1, tmp_path / "cache")
    assert how == "read from the cache" and len(calls) == 1 and (again == first).all()
    Image.new("RGB", (12, 16), (250, 0, 0)).save(tmp_path / "1.png")  # the same name, other pixels
    changed, how = face_embedding.embed(files, "pixels", 1, tmp_path / "cache")
    assert how.startswith("computed") and len(calls) == 2 and (changed[1] != first[1]).any()


def _lengths(files):
    import numpy as np

    return np.array([[len(str(f)), i] for i, f in enumerate(files)], dtype=float)


def test_face_embedding_splits_the_photos_over_workers_and_joins_them_in_order():
    files = [f"photo-{'x' * i}.jpg" for i in range(7)]
    out = face_embedding.map_in_workers(_lengths, files, 3)
    assert list(out[:, 0]) == [len(f) for f in files]  # each row is its own file's
    assert list(out[:, 1]) == [0, 0, 0, 1, 1, 1, 2]  # place in its chunk: files 0 3 6 | 1 4 | 2 5


def test_face_embedding_checks_its_inputs_before_embedding_a_face(demo_root, demo_copy, tiny_config, tmp_path,
                                                                  capsys, monkeypatch):
    import shutil

    import pandas as pd

    from facemask.training.trainer import fit

    calls = []
    monkeypatch.setitem(face_embedding.EMBEDDINGS, "pixels", _pixel_embedding(calls))
    run = fit(tiny_config())
    answers = tmp_path / "answers.csv"
    answers.write_text("ImageID,ans\nnot-an-eval-image.jpg,0\n")
    base = ["--eval", str(demo_root / "eval"), "--embedding", "pixels", "--cache-dir", ""]
    good = ["--train", str(demo_root / "train"), "--runs", str(run)]
    broken = tmp_path / "broken-run"
    shutil.copytree(run, broken)
    pd.read_csv(run / "val_predictions.csv").drop(columns="p3").to_csv(broken / "val_predictions.csv", index=False)
    bare_answers = tmp_path / "bare.csv"
    bare_answers.write_text("ImageID\nx.jpg\n")
    for extra, message in ((good + ["--c", "0"], "--c / --cs 0"), (good + ["--cs", "1", "-2"], "--c / --cs -2"),
                           (good + ["--weights", "1", "-1"], "at least 0"),
                           (good + ["--out", str(tmp_path / "no" / "t.csv")], "its folder does not exist"),
                           (["--train", str(demo_root / "train"), "--runs", str(broken)], "no column 'p3'"),
                           (good + ["--answers", str(bare_answers)], "has no column 'ans'"),
                           (good + ["--workers", "0"], "--workers 0"), (good + ["--tta", "spin"], "spin"),
                           (["--train", str(demo_root / "train"), "--runs", str(tmp_path)], "best.pt"),
                           (["--train", str(demo_copy / "train"), "--runs", str(run)], "is not one of --train's"),
                           (good + ["--answers", str(answers)], "no answer for")):
        with pytest.raises(SystemExit) as exit_info:
            face_embedding.main(base + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert calls == []  # nothing was embedded
    monkeypatch.setattr(face_embedding.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        face_embedding.main(["--eval", str(demo_root / "eval"), "--cache-dir", ""] + good)
    assert exit_info.value.code == 2 and "pip install face-recognition-models" in capsys.readouterr().err


FAKE_BUILD = """
import numpy as np
W, H = 384, 512


def homography(src, dst):  # least squares, affine is enough for the squares of this test
    a = np.c_[src, np.ones(len(src))]
    m = np.linalg.lstsq(a, dst, rcond=None)[0].T
    return np.vstack([m, [0, 0, 1]])


class Templates:
    def __init__(self, folder):
        pass

    def get(self, name, color):  # a 100x100 opaque square, its six points on its edges
        rgba = np.full((100, 100, 4), 255, np.float32)
        return rgba, np.float32([[0, 0], [50, 0], [99, 0], [99, 99], [50, 99], [0, 99]])
"""


def _square(top: float, bottom: float, left: float = 150, right: float = 250) -> str:
    middle = (left + right) / 2
    return " ".join(f"{x:.1f} {y:.1f}" for x, y in ((left, top), (middle, top), (right, top), (right, bottom),
                                                  (middle, bottom), (left, bottom)))


def _fake_kit(folder: Path) -> Path:
    """Two people, masks worn from the nose bridge (y 200) to the chin (y 350); a's incorrectly worn mask from y 260
    to 380, b's from y 250 to 400 on a photo enlarged 1.2x about its centre and moved 60 px down."""
    (folder / "build.py").write_text(FAKE_BUILD)
    lines = ["id,image,angle,scale,dx,dy,gain,bias,template,color,mode,points"]
    for person in ("a", "b"):
        lines += [f"{person},mask{k},0,1,0,0,1,0,surgical,,correct,{_square(200, 350)}" for k in range(1, 6)]
        lines.append(f"{person},normal,0,{1.2 if person == 'b' else 1},0,{60 if person == 'b' else 0},1,0,,,,")
    lines.append(f"a,incorrect_mask,0,1,0,0,1,0,surgical,,nose,{_square(260, 380)}")
    lines.append(f"b,incorrect_mask,0,1.2,0,60,1,0,surgical,,chin,{_square(250, 400)}")
    (folder / "renders.csv").write_text("\n".join(lines) + "\n")
    for name in ("faces", "masks"):
        (folder / name).mkdir()
    (folder / "people.csv").write_text("id,gender,age\na,male,40\nb,female,20\n")
    return folder


def test_unseen_masks_finds_which_incorrectly_worn_renders_leave_the_nose_uncovered(tmp_path):
    """Two people, masks worn from the nose bridge (y 200) to the chin (y 350); person a wears the sixth mask from
    y 260 (a share 0.4 down: below the nose, which is then taken to be at 0.2, y 230), person b from y 250 on a photo
    enlarged 1.2x about its centre (192, 256) and moved 60 px down: over the nose (y 230 is y 285 there)."""
    import hashlib

    _fake_kit(tmp_path)
    found = unseen_masks.nose_uncovered(tmp_path)
    key = {person: hashlib.sha1(f"{person}/incorrect_mask".encode()).hexdigest() + ".jpg" for person in "ab"}
    assert found == {key["a"]: True, key["b"]: False}
    report = unseen_masks.nose_report(tmp_path)
    assert report.loc[("surgical", "chin"), "nose_uncovered"] == 0.0 and report.loc[("all", ""), "photos"] == 2

    # --incorrect nose-out: the same kit with every incorrectly worn mask pulled down until the nose is uncovered
    styled = unseen_masks.styled_kit(tmp_path, tmp_path / "styled", unseen_masks.SURGICAL, unseen_masks.OTHER,
                                     {"b"}, nose_out=True)
    assert unseen_masks.nose_uncovered(styled, reference=tmp_path) == {key["a"]: True, key["b"]: True}
    rows = (styled / "renders.csv").read_text().splitlines()
    b_points = [float(v) for v in rows[-1].split(",")[-1].split()]
    tip = 1.2 * (260 - 256) + 256 + 60  # the nose tip (y 260 on the unmoved face) on b's moved photo
    assert tip <= b_points[1] <= tip + 5  # its top just below the nose tip, not further
    assert b_points[4] - b_points[0] == pytest.approx(1.2 * 100)  # the worn mask's placement, moved as the photo
    a_points = [float(v) for v in rows[-2].split(",")[-1].split()]
    assert 260 <= a_points[1] <= 264  # person a's worn placement, its top edge pulled down below the nose as well
    assert a_points[7] == a_points[9] == a_points[11] == pytest.approx(380)  # a's bottom edge stays the kit's
    worn_bottom = 1.2 * (350 - 256) + 256 + 60  # b's kit bottom (y 326 unmoved) is above the worn one: the worn one
    assert b_points[7] == b_points[9] == b_points[11] == pytest.approx(worn_bottom)
    # a mask pulled down to within a third of its worn height of its bottom edge takes the bottom edge with it
    geometry = unseen_masks.KitGeometry(tmp_path)
    geometry.nose_share = geometry.chin_share = 1.0  # the chin itself must be uncovered
    low = geometry.below_nose(geometry.incorrect_rows()[0], "surgical", "")
    assert low[1, 1] > 350 and low[4, 1] - low[1, 1] == pytest.approx(150 / 3, abs=1)


def test_unseen_masks_names_each_data_set_by_the_placements_it_was_rendered_from(tmp_path, monkeypatch):
    """A reused --out never scores runs of one placement on the data of another: the data set, and with it each
    run's data.root, is named by the renders it was made from."""
    import numpy as np

    (tmp_path / "kit").mkdir()
    kit = _fake_kit(tmp_path / "kit")
    rendered, trained = [], []

    def fake_render(styled, out, *args):
        rendered.append((out.name, (styled / "renders.csv").read_text()))
        (out / "eval" / "images").mkdir(parents=True, exist_ok=True)
        (out / "eval_answers.csv").write_text("ImageID,ans\nx.jpg,0\n")
        return out

    def fake_fit(cfg):
        trained.append(cfg.data.root)
        return tmp_path / "run"

    monkeypatch.setattr(unseen_masks, "eval_ids_of", lambda *args: {"b"})
    monkeypatch.setattr(unseen_masks, "render", fake_render)
    monkeypatch.setattr(unseen_masks, "fit", fake_fit)
    monkeypatch.setattr(unseen_masks, "run_probs", lambda *args, **kwargs: np.eye(18)[[0]])
    for placement in ("kit", "nose-out", "kit"):
        unseen_masks.main(["--kit", str(kit), "--configs", "configs/tiny.yaml", "--splits", "surgical->other",
                           "--out", str(tmp_path / "out"), "--incorrect", placement])
    (kit_name, kit_renders), (nose_name, nose_renders), again = rendered
    assert kit_renders != nose_renders and kit_name != nose_name and again[0] == kit_name
    assert kit_name.startswith("surgical-to-other-") and nose_name.startswith("surgical-to-other-nose-out-")
    assert [Path(root).parent.name for root in trained] == [kit_name, nose_name, kit_name]


def test_unseen_masks_draws_a_hand_over_the_mouth_of_each_eval_bare_photo_and_scores_it(tmp_path, monkeypatch):
    import hashlib

    import numpy as np
    from PIL import Image

    kit = _fake_kit(tmp_path)
    data = tmp_path / "data"
    (data / "eval" / "images").mkdir(parents=True)
    ids = {person: hashlib.sha1(f"{person}/normal".encode()).hexdigest() + ".jpg" for person in "ab"}
    grey = {"a": 60, "b": 200}  # each hand is made of the other person's skin
    for person, image_id in ids.items():
        Image.fromarray(np.full((512, 384, 3), grey[person], np.uint8)).save(data / "eval" / "images" / image_id)
    (data / "eval_answers.csv").write_text("ImageID,ans\n" + "".join(f"{i},12\n" for i in ids.values()))
    files = unseen_masks.hand_photos(kit, data, kit)
    hands = Path(files[0]).parent
    assert hands.name.startswith("hands-") and files == sorted(str(hands / i) for i in ids.values())
    drawn = {Path(f).name: np.asarray(Image.open(f)).astype(int) for f in files}
    for person, mouth in (("a", 200 + 0.62 * 150), ("b", 1.2 * (200 + 0.62 * 150 - 256) + 256 + 60)):
        changed = (np.abs(drawn[ids[person]] - grey[person]) > 40).any(2)  # b's photo: enlarged 1.2x, moved 60 down
        assert changed[int(mouth)].any() and changed[:120].sum() == 0  # over the mouth, never the top of the photo
        assert 0.02 < changed.mean() < 0.3  # a hand, not the whole photo
    calls = {}

    def record(photo, skin, mouth, length, rng):
        calls[int(photo[0, 0, 0])] = (mouth, length, float(skin.mean()))
        return photo

    monkeypatch.setattr(unseen_masks, "hand_over_mouth", record)
    (data / "again" / "eval").mkdir(parents=True)
    (data / "again" / "eval" / "images").symlink_to(data / "eval" / "images")
    (data / "again" / "eval_answers.csv").write_text((data / "eval_answers.csv").read_text())
    unseen_masks.hand_photos(kit, data / "again", kit)
    (mouth_a, length_a, skin_a), (mouth_b, length_b, skin_b) = calls[60], calls[200]
    assert mouth_a == pytest.approx([200, 200 + 0.62 * 150]) and length_a == pytest.approx(150)
    # b's bare photo is enlarged 1.2x about its centre (192, 256) and moved 60 px down: so is its mouth
    assert mouth_b == pytest.approx([1.2 * 8 + 192, 1.2 * (293 - 256) + 256 + 60]) and length_b == pytest.approx(180)
    assert (skin_a, skin_b) == (200, 60)  # each hand made of the other person's skin
    monkeypatch.undo()
    (data / "again").rename(tmp_path / "again")
    before = {f: Path(f).stat().st_mtime_ns for f in files}
    assert unseen_masks.hand_photos(kit, data, kit) == files  # drawn once, then reused
    assert {f: Path(f).stat().st_mtime_ns for f in files} == before
    assert sorted(p.name for p in data.iterdir()) == ["eval", "eval_answers.csv", hands.name]  # no temporary one
    monkeypatch.setattr(unseen_masks, "hand_shape", lambda length, rng: (np.zeros((3, 3)), np.zeros((3, 3))))
    assert Path(unseen_masks.hand_photos(kit, data, kit)[0]).parent != hands  # other drawing code, other folder
    monkeypatch.undo()

    # through main: the hands' answers are scored apart from the eval photos' ("not worn" is class 12 and up)
    def fake_render(styled, out, *args):
        (out / "eval" / "images").mkdir(parents=True, exist_ok=True)
        for image_id in ids.values():
            Image.fromarray(np.full((512, 384, 3), 90, np.uint8)).save(out / "eval" / "images" / image_id)
        (out / "eval_answers.csv").write_text("ImageID,ans\n" + "".join(f"{i},12\n" for i in ids.values()))
        return out

    def fake_probs(run, files, *args, **kwargs):  # the eval photos "not worn", the hands "worn"
        return np.eye(18)[[0 if "/hands-" in f else 12 for f in files]]

    monkeypatch.setattr(unseen_masks, "eval_ids_of", lambda *args: {"a", "b"})
    monkeypatch.setattr(unseen_masks, "render", fake_render)
    monkeypatch.setattr(unseen_masks, "fit", lambda cfg: tmp_path / "run")
    monkeypatch.setattr(unseen_masks, "run_probs", fake_probs)
    table = unseen_masks.main(["--kit", str(kit), "--configs", "configs/tiny.yaml", "--splits", "surgical->other",
                               "--out", str(tmp_path / "out"), "--hands"])
    assert table["recall_not_wear"].tolist() == [1.0] and table["not_worn_hand"].tolist() == [0.0]


def test_detection_benchmark_scores_the_masked_filter_beside_the_bare_one_on_the_same_canvases(
        demo_root, masked_filter, capsys):
    masked = masked_filter
    table = detection.main(["--data", str(demo_root / "eval"), "--answers", str(demo_root / "eval_answers.csv"),
                            "--photos", "12", "--widths", "160", "--thresholds", "-0.8", "--masked", str(masked)])
    out = capsys.readouterr().out
    assert f"hog + {masked}" in out and "seconds per canvas" in out
    bare, both = (table[table["detector"] == name].reset_index() for name in ("hog", f"hog + {masked}"))
    assert len(bare) == 12 and bare[["mask", "width"]].equals(both[["mask", "width"]])
    assert both["found"].sum() > bare["found"].sum()  # drawn masked faces the bare filter misses are found
