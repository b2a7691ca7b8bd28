"""Every toolbox option through the public config, each checked for a real effect."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from facemask.cli import main
from facemask.config import load_config
from facemask.data.corrections import apply_corrections, training_labels
from facemask.data.layout import read_train
from facemask.data.samplers import EpochSampler
from facemask.data.transforms import build_transforms, decode_crop
from facemask.errors import ConfigError, DataError
from facemask.models.factory import create_model
from facemask.models.freeze import backbone_stages
from facemask.training.losses import create_loss
from facemask.training.mixing import BatchMixer
from facemask.training.optim import create_optimizer, create_scheduler
from facemask.training.trainer import check_config, fit
from facemask.utils import seed_everything


def cfg_of(*overrides):
    return load_config("configs/tiny.yaml", list(overrides))


# ---- samplers -------------------------------------------------------------------------------------------------
SKEWED = np.repeat(np.arange(6), [400, 100, 40, 10, 5, 2])


@pytest.mark.parametrize("mode", ["weighted", "imbalanced"])
def test_balanced_samplers_draw_near_uniform_classes(mode):
    sampler = EpochSampler(SKEWED, seed=0, mode=cfg_of(f"data.sampler={mode}").data.sampler)
    drawn = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        drawn += [SKEWED[i] for i, _ in sampler]
    share = np.bincount(drawn, minlength=6) / len(drawn)
    assert np.abs(share - 1 / 6).max() < 0.03, share
    batches = np.array(drawn[: 32 * 50]).reshape(50, 32)
    assert np.mean([len(set(b)) for b in batches]) > 5  # batches mix all classes, not runs of one


@pytest.mark.parametrize("mode", ["weighted", "imbalanced"])
def test_each_drawn_copy_of_an_image_gets_its_own_augmentation_seed_and_resume_keeps_them(mode):
    sampler = EpochSampler(SKEWED, seed=0, mode=mode)
    drawn = list(sampler)
    assert len({i for i, _ in drawn}) < len(drawn)  # rare images are drawn several times...
    assert len(set(drawn)) == len(drawn)  # ...and each copy is augmented differently
    sampler.set_epoch(0, start=100)
    assert list(sampler) == drawn[100:]  # resuming mid-epoch gives the same (image, seed) pairs


def test_no_sampler_keeps_the_class_skew():
    sampler = EpochSampler(SKEWED, seed=0, mode="none")
    share = np.bincount([SKEWED[i] for i, _ in sampler], minlength=6) / len(SKEWED)
    assert share[0] > 0.7


# ---- losses ---------------------------------------------------------------------------------------------------
def test_focal_gamma_zero_is_cross_entropy_and_gamma_changes_it():
    x, y = torch.randn(16, 18), torch.randint(0, 18, (16,))
    focal0 = create_loss(cfg_of("loss.name=focal", "loss.gamma=0").loss)
    assert torch.allclose(focal0(x, y), F.cross_entropy(x, y), atol=1e-6)
    focal2 = create_loss(cfg_of("loss.name=focal", "loss.gamma=2").loss)
    assert focal2(x, y) < F.cross_entropy(x, y)


def test_label_smoothing_and_focal_ls():
    x, y = torch.randn(16, 18), torch.randint(0, 18, (16,))
    ls = create_loss(cfg_of("loss.name=label_smoothing", "loss.label_smoothing=0.2").loss)
    assert torch.allclose(ls(x, y), F.cross_entropy(x, y, label_smoothing=0.2), atol=1e-6)
    assert torch.allclose(create_loss(cfg_of("loss.name=ce", "loss.label_smoothing=0.1").loss)(x, y),
                          F.cross_entropy(x, y, label_smoothing=0.1), atol=1e-6)
    fls = create_loss(cfg_of("loss.name=focal_ls", "loss.gamma=0", "loss.label_smoothing=0.1").loss)
    assert torch.allclose(fls(x, y), F.cross_entropy(x, y, label_smoothing=0.1), atol=1e-6)
    assert not torch.allclose(create_loss(cfg_of("loss.name=focal_ls").loss)(x, y), ls(x, y))


def test_f1_loss_tracks_the_metric():
    y = torch.arange(18).repeat(4)
    perfect = F.one_hot(y, 18).float() * 20
    f1 = create_loss(cfg_of("loss.name=f1").loss)
    assert f1(perfect, y) < 1e-3 and f1(torch.zeros(72, 18), y) > 0.9
    x = torch.randn(72, 18, requires_grad=True)
    f1(x, y).backward()
    assert x.grad.abs().sum() > 0


def test_class_weights_inverse_frequency():
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    loss = create_loss(cfg_of("loss.class_weights=inverse").loss, labels)
    x, y = torch.randn(20, 18), torch.randint(0, 3, (20,))
    w = torch.zeros(18)
    w[:3] = torch.tensor([1 / 60, 1 / 30, 1 / 10])
    assert torch.allclose(loss(x, y), F.cross_entropy(x, y, weight=w), atol=1e-5)
    assert not torch.allclose(loss(x, y), F.cross_entropy(x, y), atol=1e-4)


def test_multi_head_loss_is_the_weighted_sum_of_per_attribute_losses():
    cfg = cfg_of("model.head=multi", "loss.head_weights=[1.0, 2.0, 0.5]")
    model = create_model(cfg.model).eval()
    logits = model(torch.randint(0, 256, (6, 3, 64, 48)).float())
    assert torch.allclose(logits.logsumexp(1), torch.zeros(6), atol=1e-5)  # a joint distribution
    y = torch.randint(0, 18, (6,))
    joint = logits.view(6, 3, 2, 3)
    expected = (F.cross_entropy(joint.logsumexp((2, 3)), y // 6) + 2 * F.cross_entropy(joint.logsumexp((1, 3)),
                (y // 3) % 2) + 0.5 * F.cross_entropy(joint.logsumexp((1, 2)), y % 3))
    assert torch.allclose(create_loss(cfg.loss, multihead=True)(logits, y), expected, atol=1e-5)


# ---- optimizers and schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("nadam", "NAdam"),
                                      ("adamp", "AdamP")])
def test_optimizers_from_timm_without_decay_on_norms_and_biases(name, cls):
    cfg = cfg_of(f"optim.name={name}", "optim.weight_decay=0.05", "optim.head_lr=0.1", "optim.lr=0.001")
    model = create_model(cfg.model)
    optimizer = create_optimizer(model, cfg.optim)
    assert type(optimizer).__name__ == cls
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert by_param[id(module.weight)]["weight_decay"] == 0
    assert by_param[id(model.head[1].bias)]["weight_decay"] == 0
    assert by_param[id(model.head[1].weight)]["weight_decay"] == 0.05
    assert by_param[id(model.head[1].weight)]["lr"] == 0.1
    assert by_param[id(model.backbone.conv_stem.weight)]["lr"] == 0.001


def test_layer_decay_gives_each_backbone_stage_a_smaller_rate_than_the_one_above_it():
    cfg = cfg_of("optim.lr=0.01", "optim.layer_decay=0.5", "optim.weight_decay=0.05")
    model = create_model(cfg.model)
    optimizer = create_optimizer(model, cfg.optim)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(by_param) == len([p for p in model.parameters() if p.requires_grad])  # every parameter, once
    stages = backbone_stages(model.backbone)
    params = dict(model.backbone.named_parameters())
    for k, names in enumerate(stages):
        for name in names:
            assert by_param[id(params[name])]["lr"] == pytest.approx(0.01 * 0.5 ** (len(stages) - k))
            assert by_param[id(params[name])]["lr_factor"] == pytest.approx(0.5 ** (len(stages) - k))
    assert by_param[id(model.head[1].weight)]["lr"] == 0.01  # the head keeps optim.lr
    assert by_param[id(model.head[1].bias)]["weight_decay"] == 0
    assert {id(p) for p in model.backbone.parameters()} <= set(by_param)
    # the schedule scales every group from its own rate
    sched = create_scheduler(optimizer, cfg_of("sched.min_lr=0", "sched.warmup_epochs=0").sched, epochs=2,
                            updates_per_epoch=2)
    sched.step_update(2)
    lrs = {g["lr"] / g["initial_lr"] for g in optimizer.param_groups}
    assert max(lrs) - min(lrs) < 1e-6


def test_layer_decay_logs_the_rate_of_optim_lr_and_refuses_a_backbone_without_stages(tiny_config):
    plain = fit(tiny_config("train.epochs=2", "sched.warmup_epochs=0.5"))
    decayed = fit(tiny_config("train.epochs=2", "sched.warmup_epochs=0.5", "optim.layer_decay=0.5"))
    lrs = [pd.read_csv(run / "metrics.csv")["lr"].to_numpy() for run in (plain, decayed)]
    np.testing.assert_allclose(lrs[1], lrs[0])  # the schedule's rate for optim.lr, not the stem's decayed one
    model = create_model(cfg_of().model)
    model.backbone = torch.nn.Sequential(torch.nn.Linear(2, 2))  # a backbone without timm's group_matcher
    with pytest.raises(ConfigError, match="optim.layer_decay=0.5"):
        create_optimizer(model, cfg_of("optim.layer_decay=0.5").optim)


def test_sgd_nesterov_is_a_setting():
    model = create_model(cfg_of().model)
    assert create_optimizer(model, cfg_of("optim.name=sgd").optim).defaults["nesterov"] is True
    plain = create_optimizer(model, cfg_of("optim.name=sgd", "optim.nesterov=false", "optim.momentum=0.8").optim)
    assert plain.defaults["nesterov"] is False and plain.defaults["momentum"] == 0.8


def _lr_trace(*overrides, epochs=4, per_epoch=4, metric=lambda e: 0.5):
    cfg = cfg_of("optim.lr=1.0", "sched.min_lr=0.0", *overrides)
    optimizer = create_optimizer(create_model(cfg.model), cfg.optim)
    scheduler = create_scheduler(optimizer, cfg.sched, epochs, per_epoch)
    trace = []
    for epoch in range(epochs):
        for step in range(per_epoch):
            trace.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step_update(epoch * per_epoch + step + 1)
        if scheduler is not None:
            scheduler.step(epoch + 1, metric(epoch))
    return np.round(trace, 4), scheduler, optimizer


def test_schedules_do_what_they_say():
    assert set(_lr_trace("sched.name=none")[0]) == {1.0}
    step, _, _ = _lr_trace("sched.name=step", "sched.decay_epochs=2", "sched.decay_rate=0.1")
    assert list(step[:8]) == [1.0] * 8 and list(step[8:]) == [0.1] * 8
    multi, _, _ = _lr_trace("sched.name=multistep", "sched.milestones=[1, 3]", "sched.decay_rate=0.5")
    assert list(multi[::4]) == [1.0, 0.5, 0.5, 0.25]
    expo, _, _ = _lr_trace("sched.name=exponential", "sched.decay_rate=0.5")
    assert list(expo[::4]) == [1.0, 0.5, 0.25, 0.125]
    cosine, _, _ = _lr_trace("sched.name=cosine")
    assert all(np.diff(cosine) < 0) and cosine[1] < 1.0  # stepped every iteration, not every epoch
    plateau, _, _ = _lr_trace("sched.name=plateau", "sched.patience=1", "sched.decay_rate=0.5",
                              metric=lambda e: [0.6, 0.5, 0.5, 0.5][e])  # 2 epochs without improvement
    assert list(plateau[::4]) == [1.0, 1.0, 1.0, 0.5]
    warm, _, _ = _lr_trace("sched.name=cosine", "sched.warmup_epochs=1")
    assert list(warm[:4]) == [0.0, 0.25, 0.5, 0.75] and warm[4] > warm[3]
    warm_plateau, _, _ = _lr_trace("sched.name=plateau", "sched.warmup_epochs=1")
    assert list(warm_plateau[:5]) == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("name", ["step", "cosine", "plateau", "exponential"])
def test_schedule_state_round_trips(name):
    _, scheduler, optimizer = _lr_trace(f"sched.name={name}", "sched.warmup_epochs=0.5", epochs=2,
                                        metric=lambda e: 0.5)
    state = scheduler.state_dict()
    _, other, other_opt = _lr_trace(f"sched.name={name}", "sched.warmup_epochs=0.5", epochs=1)
    other.load_state_dict(state)
    other_opt.load_state_dict(optimizer.state_dict())
    for s in (scheduler, other):
        s.step(3, 0.4)
        s.step_update(9)
    assert optimizer.param_groups[0]["lr"] == other_opt.param_groups[0]["lr"]


# ---- augmentation ---------------------------------------------------------------------------------------------
IMAGE = torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("preset,override", [("flip", "aug.flip_p=1.0"), ("affine", "aug.degrees=20"),
                                             ("colour", "aug.brightness=0.5"), ("contrast", "aug.contrast=0.6"),
                                             ("grayscale", "aug.grayscale_p=1.0"), ("noise", "aug.noise_std=10"),
                                             ("erasing", "aug.erasing_p=1.0"), ("always_grayscale", "aug.flip_p=0.5")])
def test_each_preset_changes_training_images_and_eval_keeps_only_deterministic_parts(preset, override):
    cfg = cfg_of(f"data.augment={preset}", override)
    train, evaluation = build_transforms(cfg.data.augment, cfg.aug)
    torch.manual_seed(1)
    out = train(IMAGE.clone())
    assert out.dtype == torch.uint8 and out.shape == IMAGE.shape
    assert not torch.equal(out, IMAGE)
    if preset == "always_grayscale":
        gray = evaluation(IMAGE.clone())
        assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    else:
        assert torch.equal(evaluation(IMAGE.clone()), IMAGE)


def test_presets_compose_and_take_their_parameters():
    cfg = cfg_of("data.augment=flip,noise", "aug.flip_p=1.0", "aug.noise_std=0.0")
    train, _ = build_transforms(cfg.data.augment, cfg.aug)
    assert torch.equal(train(IMAGE.clone()), IMAGE.flip(-1))
    with pytest.raises(ConfigError, match="data.augment='sparkle'"):
        build_transforms("flip,sparkle")


def test_centercrop_is_applied_at_decode_time(demo_root, tmp_path):
    from facemask.data.images import Decoding, load_image

    cfg = cfg_of("data.augment=centercrop,flip", "aug.crop_height=256", "aug.crop_width=192")
    crop = decode_crop(cfg.data.augment, cfg.aug)
    assert crop == (256, 192) and decode_crop("flip") is None
    file = read_train(demo_root / "train").file.iloc[0]
    full = load_image(file)
    np.testing.assert_array_equal(load_image(file, decoding=Decoding(crop=crop)), full[128:384, 96:288])
    assert not np.array_equal(load_image(file, (64, 48), Decoding(crop=crop)), load_image(file, (64, 48)))


def test_mixup_cutmix_and_halfmix():
    labels = torch.arange(8)
    images = torch.randint(0, 256, (8, 3, 16, 12)).float()
    mixer = BatchMixer(cfg_of("aug.mixup_alpha=0.4").aug)
    np.random.seed(0)
    mixed, targets = mixer(images.clone(), labels)
    assert targets.shape == (8, 18) and torch.allclose(targets.sum(1), torch.ones(8))
    assert (targets > 0).sum(1).min() == 2 and not torch.equal(mixed, images)
    mixed, targets = BatchMixer(cfg_of("aug.cutmix_alpha=1.0").aug)(images.clone(), labels)
    assert (targets > 0).sum(1).min() == 2
    mixed, targets = BatchMixer(cfg_of("aug.halfmix_p=1.0").aug)(images.clone(), labels)
    assert torch.equal(mixed[..., :6], images[..., :6]) and torch.equal(mixed[..., 6:], images.flip(0)[..., 6:])
    assert torch.allclose(targets[0, [0, 7]], torch.tensor([0.5, 0.5]))
    assert not BatchMixer(cfg_of().aug).active


# ---- training-level options (tiny runs) -----------------------------------------------------------------------
def _initial_model(cfg):
    seed_everything(cfg.train.seed)
    return create_model(cfg.model, cfg.data.mean, cfg.data.std).state_dict()


def _trained(run):
    return torch.load(run / "last.pt", weights_only=True)["model"]


def test_freeze_whole_backbone_and_first_stages(tiny_config):
    cfg = tiny_config("model.freeze=-1", "optim.lr=0.01")
    before, after = _initial_model(cfg), _trained(fit(cfg))
    backbone = [k for k in before if k.startswith("backbone.")]
    assert all(torch.equal(before[k], after[k]) for k in backbone)  # weights and BatchNorm statistics
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
    cfg = tiny_config("model.freeze=2", "optim.lr=0.01")
    before, after = _initial_model(cfg), _trained(fit(cfg))
    assert torch.equal(before["backbone.conv_stem.weight"], after["backbone.conv_stem.weight"])
    assert torch.equal(before["backbone.blocks.0.0.conv.weight"], after["backbone.blocks.0.0.conv.weight"])
    assert not torch.equal(before["backbone.blocks.1.0.conv_exp.weight"], after["backbone.blocks.1.0.conv_exp.weight"])


def test_melt_at_epoch_and_on_patience(tiny_config):
    def stem_changed(*overrides):
        cfg = tiny_config("model.freeze=-1", "optim.lr=0.01", *overrides)
        return not torch.equal(_initial_model(cfg)["backbone.conv_stem.weight"],
                               _trained(fit(cfg))["backbone.conv_stem.weight"])
    assert not stem_changed("train.epochs=2")
    assert stem_changed("train.epochs=2", "model.melt_epoch=2")
    # lr falls every epoch under cosine, so "lr, max" stops improving after epoch 1: patience 1 melts after epoch 2
    assert stem_changed("train.epochs=3", "model.melt_patience=1", "train.select_metric=lr")
    assert not stem_changed("train.epochs=2", "model.melt_patience=1", "train.select_metric=lr")


def test_shallow_and_multi_heads_train_and_predict(tiny_config, demo_root, tmp_path):
    shallow = create_model(cfg_of("model.head=shallow", "model.hidden=32").model)
    assert sum(isinstance(m, torch.nn.Linear) for m in shallow.head.modules()) == 2
    run = fit(tiny_config("model.head=multi"))
    assert main(["predict", str(run), "--data", str(demo_root / "eval"), "--out", str(tmp_path / "s.csv"),
                 "-q"]) == 0
    assert pd.read_csv(tmp_path / "s.csv").ans.between(0, 17).all()


def test_training_age_threshold_and_border_ages_touch_training_labels_only(demo_root):
    cfg = cfg_of("data.train_age_thresholds=[30, 50]", "data.drop_ages=[20, 21, 22, 23, 24, 25]")
    samples = read_train(demo_root / "train", cfg.data.age_thresholds)
    train = training_labels(samples, cfg.data.train_age_thresholds, cfg.data.drop_ages)
    assert not train.age.isin(range(20, 26)).any() and samples.age.isin(range(20, 26)).any()
    people_50s = train[(train.age >= 50) & (train.age < 60)]
    assert len(people_50s) and (people_50s.age_group == 2).all()
    assert (samples[(samples.age >= 50) & (samples.age < 60)].age_group == 1).all()  # the true rule


def test_label_corrections(demo_root, tiny_config, tmp_path):
    samples = read_train(demo_root / "train")
    person = samples.person.iloc[0]
    old = samples[samples.person == person].iloc[0]
    fix = tmp_path / "fix.csv"
    fix.write_text(f"id,gender,age,swap_incorrect_normal\n{person},{'female' if old.gender == 0 else 'male'},"
                   f"75,1\n")
    fixed, changes = apply_corrections(samples, fix, (30, 60))
    rows = fixed[fixed.person == person].set_index("stem")
    assert (rows.gender == 1 - old.gender).all() and (rows.age_group == 2).all()
    assert rows.loc["incorrect_mask", "mask"] == 2 and rows.loc["normal", "mask"] == 1
    assert len(changes) == 3
    run = fit(tiny_config(f"data.corrections={fix}"))
    assert "incorrect_mask <-> normal" in (run / "corrections_applied.txt").read_text()
    (tmp_path / "bad.csv").write_text("id,age\nnobody,40\n")
    with pytest.raises(DataError, match="person 'nobody' is not in the dataset"):
        apply_corrections(samples, tmp_path / "bad.csv", (30, 60))


def test_early_stopping(tiny_config):
    run = fit(tiny_config("train.epochs=5", "train.early_stop=1", "train.select_metric=lr"))
    summary = json.loads((run / "eval.json").read_text())
    assert summary["stopped_early"] and summary["epochs_run"] == 2
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def test_ema_is_evaluated_alongside_and_can_pick_best(tiny_config):
    run = fit(tiny_config("train.ema_decay=0.5", "train.select_metric=ema_val_macro_f1"))
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"ema_val_macro_f1", "ema_val_loss"} <= set(metrics.columns)
    assert metrics.ema_val_loss.iloc[0] != metrics.val_loss.iloc[0]
    last, best = torch.load(run / "last.pt", weights_only=True), torch.load(run / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], last["ema"][k]) for k in best["model"])
    with pytest.raises(ConfigError, match="ema_val_macro_f1"):
        check_config(cfg_of("train.select_metric=ema_val_macro_f1"))


def test_kfold_trains_each_fold_and_writes_out_of_fold_predictions(demo_root, tmp_path, capsys):
    code = main(["train", "-c", "configs/tiny.yaml", "--folds", "3", f"data.root={demo_root / 'train'}",
                 f"train.output_dir={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    (parent,) = list(tmp_path.glob("run-kfold-*"))
    oof = pd.read_csv(parent / "oof.csv")
    samples = read_train(demo_root / "train")
    assert sorted(oof.file) == sorted(samples.file)  # every training image exactly once
    assert oof.groupby("person").fold.nunique().max() == 1  # a person's images all in one fold
    summary = json.loads((parent / "kfold.json").read_text())
    assert len(summary["fold_macro_f1"]) == 3
    assert summary["mean_macro_f1"] == pytest.approx(np.mean(summary["fold_macro_f1"]))
    assert "± " in capsys.readouterr().out
    assert main(["ensemble-search", str(parent), str(parent), "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["source"] == "out-of-fold"


@pytest.mark.parametrize("recipe", ["seed_team", "winner", "cpu", "cpu_mask"])
def test_recipes_are_valid(recipe):
    cfg = load_config(f"configs/{recipe}.yaml")
    check_config(cfg)


def test_the_mask_companion_is_cpu_yaml_with_its_masks_redrawn_and_the_early_stages_frozen():
    companion, cpu = load_config("configs/cpu_mask.yaml").to_dict(), load_config("configs/cpu.yaml").to_dict()
    assert companion["model"].pop("freeze") == 5 and companion["train"].pop("name") == "cpu_mask"
    assert companion["data"].pop("augment") == "mask_restyle," + cpu["data"].pop("augment")
    assert companion["aug"].pop("mask_restyle_arch") == [0.0, 0.4]  # each top edge arched like a cup
    cpu["model"].pop("freeze"), cpu["train"].pop("name"), cpu["aug"].pop("mask_restyle_arch")
    assert companion == cpu  # trained on the same data with the same recipe, so that the two runs pair up


def test_bf16_precision_for_training_and_prediction(tiny_config, demo_root):
    from facemask.inference.predict import run_probs

    run = fit(tiny_config("train.precision=bf16"))
    assert (run / "best.pt").is_file()
    files = pd.read_csv(demo_root / "eval" / "info.csv").ImageID.map(lambda i: str(demo_root / "eval" / "images" / i))
    fp32 = run_probs(run, files.tolist()[:8], progress=False)
    bf16 = run_probs(run, files.tolist()[:8], progress=False, precision="bf16")
    assert not np.array_equal(fp32, bf16) and np.abs(fp32 - bf16).max() < 0.05
    from facemask.inference.predict import evaluate_run

    during = json.loads((run / "eval.json").read_text())
    assert evaluate_run(run, progress=False)["loss"] == pytest.approx(during["loss"], rel=1e-6)  # evaluated in bf16
    with pytest.raises(ConfigError, match="train.precision"):
        check_config(cfg_of("train.precision=fp8"))


def test_evaluation_uses_the_runs_label_corrections(demo_root, tiny_config, tmp_path):
    from facemask.inference.predict import evaluate_run

    samples = read_train(demo_root / "train")
    fix = tmp_path / "swap.csv"
    pd.DataFrame({"id": samples.person.unique(), "swap_incorrect_normal": 1}).to_csv(fix, index=False)
    run = fit(tiny_config(f"data.corrections={fix}", "train.epochs=2"))
    during = json.loads((run / "eval.json").read_text())
    after = evaluate_run(run, progress=False)
    assert after["macro_f1"] == pytest.approx(during["macro_f1"])
    assert after["f1_per_class"] == pytest.approx(during["f1_per_class"])


def test_the_age_head_turns_an_exact_age_distribution_into_group_probabilities(tiny_config):
    from facemask.models.heads import AGE_BINS
    from facemask.training.losses import pack_ages

    cfg = cfg_of("model.head=multi_age")
    model = create_model(cfg.model, age_thresholds=(30, 60)).train()
    images = torch.randint(0, 256, (4, 3, 64, 48)).float()
    out = model(images)
    assert out.shape == (4, 18 + AGE_BINS)  # training: the classes, then the age distribution
    joint, ages = out[:, :18], out[:, 18:]
    group = joint.view(4, 3, 2, 3).logsumexp((1, 2)).exp()
    expected = torch.stack([ages[:, :30].exp().sum(1), ages[:, 30:60].exp().sum(1), ages[:, 60:].exp().sum(1)], 1)
    assert torch.allclose(group, expected, atol=1e-5)
    model.eval()
    assert model(images).shape == (4, 18)  # validation, prediction and ONNX see the 18 classes only
    loss = create_loss(cfg.loss, multihead=True, age_bins=AGE_BINS)
    labels = torch.tensor([0, 1, 2, 3])
    near = loss(out, torch.as_tensor(pack_ages(labels, [25, 45, 70, 20], AGE_BINS)))
    far = loss(out, torch.as_tensor(pack_ages(labels, [90, 5, 0, 99], AGE_BINS)))
    assert near != far  # the exact age is in the loss, not only its group
    with pytest.raises(ConfigError, match="multi_age trains on exact ages"):
        check_config(cfg_of("model.head=multi_age", "aug.mixup_alpha=0.4"))
    run = fit(tiny_config("model.head=multi_age", "train.epochs=2"))
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.val_macro_f1.max() > 0.1 and (metrics.train_accuracy <= 1).all()
    assert main(["export", str(run)]) == 0
