"""Typed run configuration: dataclasses, loaded from YAML and overridden with dotted ``key=value`` pairs.

Every run saves its resolved config as ``config.yaml``; unknown keys and values of the wrong type are errors.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facemask.errors import ConfigError


@dataclass
class DataConfig:
    root: str = "demo/train"  # folder holding train.csv and images/
    val_fraction: float = 0.2  # share of *people* held out for validation
    age_thresholds: list[int] = field(default_factory=lambda: [30, 60])  # age < 30 | 30..59 | >= 60
    height: int = 128  # network input size (images are 384x512, i.e. 3:4 portrait)
    width: int = 96
    resize: str = "stretch"  # stretch to height x width | letterbox: keep the photo's aspect ratio, pad with grey
    face_crop: str = "none"  # none | hog (dlib, offline) | module:factory: crop around the detected face first
    face_margin: float = 0.4  # face crop: margin around the face box, as a fraction of its size on each side
    face_fallback: float = 0.52  # face crop: face width assumed (centred) when none is found, x the shorter side
    augment: str = "flip"  # augmentation presets by name, comma-separated (see facemask.data.transforms.PRESETS)
    augment_on: str = "auto"  # auto (device on a GPU) | loader | device: where training augmentation runs
    augment_mode: str = "per_image"  # per_image (torchvision, one at a time) | batch (vectorised, per-image seeds)
    sampler: str = "none"  # none | weighted (inverse class frequency) | imbalanced (equal count per class)
    train_age_thresholds: list[int] | None = None  # age groups for *training* labels (e.g. [30, 58]); eval: true rule
    drop_ages: list[int] = field(default_factory=list)  # ages left out of training (e.g. [27, 28, 29, 57, 58, 59])
    corrections: str = ""  # CSV of label corrections: id[,gender][,age][,swap_incorrect_normal]
    fold: int = -1  # >= 0: validate on this person-level fold of data.folds instead of data.val_fraction
    folds: int = 5
    batch_size: int = 32
    num_workers: int = -1  # DataLoader workers; -1 chooses from the CPU count
    cache: bool = True  # decode + resize each image once into a memory-mapped uint8 array
    cache_dir: str = ""  # default: $FACEMASK_CACHE or ~/.cache/facemask
    on_bad_image: str = "error"  # error | skip: an undecodable image stops the run, or is left out and counted
    mean: list[float] | None = None  # normalisation; None = the backbone's pretrained statistics
    std: list[float] | None = None


@dataclass
class AugConfig:
    """Parameters of the augmentation presets (each used only when its preset is listed in data.augment)."""

    flip_p: float = 0.5  # flip
    crop_height: int = 320  # centercrop: the baseline's centre crop of the 384x512 photo, in source pixels
    crop_width: int = 256
    degrees: float = 10.0  # affine: rotation, translation (fraction), scale range, shear (degrees)
    translate: float = 0.08
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    shear: float = 8.0
    brightness: float = 0.3  # colour / contrast
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    grayscale_p: float = 0.2  # grayscale (random); always_grayscale converts every image
    noise_std: float = 8.0  # noise: Gaussian, in 0..255 pixel units
    erasing_p: float = 0.25  # erasing: random erasing (rectangles)
    framing_scale: list[float] = field(default_factory=lambda: [0.6, 1.8])  # framing: zoom range (<1 = zoom out)
    framing_translate: float = 0.15  # framing: shift, as a fraction of the size
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])  # resized_crop: area fraction kept
    crop_ratio: list[float] = field(default_factory=lambda: [0.5, 1.0])  # resized_crop: width / height of the crop
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 1.5])  # blur: Gaussian sigma range (input pixels)
    blur_p: float = 0.3
    jpeg_quality: list[int] = field(default_factory=lambda: [25, 95])  # jpeg: re-encoding quality range
    jpeg_p: float = 0.3
    temperature: float = 0.15  # temperature: red x (1 + t), blue x (1 - t), t in [-temperature, temperature]
    lowres_factor: list[float] = field(default_factory=lambda: [0.3, 1.0])  # lowres: shrink factor range
    lowres_p: float = 0.3
    # mask_colour / mask_texture: the lower face (where a mask is) as an ellipse in fractions of the face-cropped
    # input: centre x, centre y, half width, half height (the default fits data.face_margin=0.3 at 3:4)
    lower_face: list[float] = field(default_factory=lambda: [0.5, 0.62, 0.3, 0.16])
    mask_colour_p: float = 0.5  # mask_colour: recolour the lower face (any hue, saturation, brightness)
    mask_texture_p: float = 0.3  # mask_texture: a pattern (stripes, checks, dots, noise) over the lower face
    synthetic_mask_p: float = 0.5  # synthetic_mask: a bare face gets a mask of a random shape (label changed)
    synthetic_mask_photo_p: float = 0.4  # synthetic_mask: share of masks made of a photo's texture, not a colour
    # mask_restyle: a worn or incorrectly worn mask redrawn from the person's own bare photo (facemask.data.covers)
    mask_restyle_p: float = 0.8  # share of masked photos redrawn
    mask_restyle_width: list[float] = field(default_factory=lambda: [0.6, 1.05])  # width factor (about its middle)
    mask_restyle_length: list[float] = field(default_factory=lambda: [0.8, 1.15])  # length factor (top edge kept)
    mask_restyle_colour_p: float = 0.6  # share recoloured: its own shading in a random colour
    mask_restyle_pattern_p: float = 0.4  # share given stripes of a random period, angle and depth
    mask_restyle_skin_p: float = 0.0  # share recoloured in the wearer's own skin tone (not only hands are skin)
    mask_restyle_slide_p: float = 0.0  # share of worn masks slid down off the nose (the label becomes "incorrect")
    mask_restyle_slide: list[float] = field(default_factory=lambda: [0.3, 0.6])  # how far, in mask heights
    mask_restyle_arch: list[float] = field(default_factory=lambda: [0.0, 0.0])  # top corners lowered, mask heights
    hand_p: float = 0.5  # hand: share of bare faces given a hand over the mouth (the label stays "not worn")
    hand_size: list[float] = field(default_factory=lambda: [0.5, 0.8])  # hand: size, in lower-face widths
    hand_skin_p: float = 0.5  # hand: share of hands made of the photo's own skin, enlarged (the rest: one colour)
    hand_glove_p: float = 0.5  # hand: share of hands in any colour (gloves), so that skin colour is not what tells
    hand_mask_p: float = 0.0  # hand: share of hands made of a worn mask of the same batch (only the shape tells)
    hand_worn_p: float = 0.0  # hand: worn masks given a hand too (label kept), with probability hand_p times this
    mixup_alpha: float = 0.0  # MixUp beta(alpha, alpha); 0 = off (timm's Mixup)
    cutmix_alpha: float = 0.0  # CutMix beta(alpha, alpha); 0 = off
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    mix_switch_prob: float = 0.5  # with both on: probability of CutMix instead of MixUp
    halfmix_p: float = 0.0  # the winners' variant: left half of one face joined to the right half of another


@dataclass
class ModelConfig:
    name: str = "efficientnet_lite0"  # any timm backbone name
    pretrained: str = "imagenet-lite"  # imagenet-lite | hub | none | path/to/weights.pt
    head: str = "linear"  # linear | shallow | multi (mask 3 + gender 2 + age 3) | multi_age (exact-age distribution)
    drop_rate: float = 0.2
    hidden: int = 512  # width of the shallow head's hidden layer
    freeze: int = 0  # freeze the backbone's first N stages (stem = stage 1); -1 = the whole backbone
    melt_epoch: int = 0  # unfreeze at the start of this epoch (1-based); 0 = never
    melt_patience: int = 0  # or unfreeze when the selection metric has not improved for this many epochs


@dataclass
class LossConfig:
    name: str = "ce"  # ce | focal | label_smoothing | f1 | focal_ls (see facemask.training.losses.LOSSES)
    label_smoothing: float = 0.0  # epsilon for ce, focal and focal_ls; label_smoothing uses 0.1 when this is 0
    gamma: float = 2.0  # focal and focal_ls
    class_weights: str = "none"  # none | inverse (inverse class frequency) | sqrt_inverse
    head_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # multi head: mask, gender, age
    age_sigma: float = 3.0  # multi_age head: width (years) of the Gaussian around the exact age it is trained on
    age_weight: float = 1.0  # multi_age head: weight of the exact-age term beside the 18-class loss


@dataclass
class OptimConfig:
    name: str = "adamw"  # any timm optimizer name (adamw, adam, sgd, nadam, adamp, ...)
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # SGD-style optimizers only
    nesterov: bool = True  # sgd only
    head_lr: float | None = None  # learning rate of the head; None = lr
    layer_decay: float = 1.0  # backbone stage k of n (stem = 1) learns at lr * layer_decay ** (n + 1 - k); 1 = off


@dataclass
class SchedConfig:
    name: str = "cosine"  # none | step | multistep | exponential | cosine | plateau
    warmup_epochs: float = 0.0  # linear warmup, in epochs (fractions allowed)
    min_lr: float = 1e-6
    decay_epochs: float = 2.0  # step: decay every this many epochs
    milestones: list[int] = field(default_factory=lambda: [3, 6])  # multistep: epochs at which to decay
    decay_rate: float = 0.5  # step / multistep / exponential (per epoch) / plateau factor
    patience: int = 2  # plateau: epochs without improvement of val macro F1 before decaying


@dataclass
class TrainConfig:
    epochs: int = 5
    seed: int = 42
    name: str = "run"  # run folder is <output_dir>/<name>-<time>
    output_dir: str = "runs"
    select_metric: str = "val_macro_f1"  # column of metrics.csv that chooses best.pt
    select_mode: str = "max"  # max | min
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 chooses from the CPU count
    channels_last: bool = True  # memory format measured faster for these CNNs on CPU and GPU
    precision: str = "fp32"  # fp32 | bf16 (autocast) for training and validation
    progress: bool = True  # tqdm bars
    report: bool = True  # write report.html (+ PNGs) at the end of training
    early_stop: int = 0  # stop when the selection metric has not improved for this many epochs; 0 = off
    ema_decay: float = 0.0  # keep an EMA of the weights (timm ModelEmaV3), evaluated alongside; 0 = off


@dataclass
class TrackConfig:
    mlflow: bool = True  # log params, per-epoch metrics and artifacts to MLflow
    uri: str = ""  # tracking URI; empty = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working folder
    experiment: str = "facemask"
    log_checkpoint: bool = False  # also upload best.pt as an artifact
    tensorboard: bool = False  # also write TensorBoard event files to RUN/tensorboard


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "Config":
        """Check every option's range (the registry names are checked where they are defined); the first problem
        is a ConfigError naming the option. Cheap: runs before any data is read or folder written."""
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            for option in dataclasses.fields(values):
                value = getattr(values, option.name)
                items = value if isinstance(value, list) else [value]
                if any(isinstance(v, float) and not math.isfinite(v) for v in items):
                    raise ConfigError(f"option {section.name}.{option.name}={value} must be a finite number")
        for key, check, need in RANGES:
            section, _, name = key.partition(".")
            value = getattr(getattr(self, section), name)
            if value is not None and not check(value):
                raise ConfigError(f"option {key}={value} {need}")
        data = self.data
        for key, ages in (("age_thresholds", data.age_thresholds), ("train_age_thresholds", data.train_age_thresholds)):
            if ages is not None and (len(ages) != 2 or not 0 < ages[0] < ages[1]):
                raise ConfigError(f"option data.{key} must be two increasing ages, got {ages}")
        if data.fold >= data.folds:
            raise ConfigError(f"option data.fold={data.fold} needs 0 <= fold < data.folds ({data.folds})")
        for key, values in (("mean", data.mean), ("std", data.std)):
            if values is not None and len(values) != 3:
                raise ConfigError(f"option data.{key} needs 3 values (R, G, B), got {values}")
        if data.std is not None and min(data.std) <= 0:
            raise ConfigError(f"option data.std={data.std} must be positive")
        if len(self.loss.head_weights) != 3 or min(self.loss.head_weights) < 0:
            raise ConfigError(f"option loss.head_weights needs 3 values >= 0 (mask, gender, age), "
                              f"got {self.loss.head_weights}")
        return self


def _probability(x: float) -> bool:
    return 0.0 <= x <= 1.0


# (option, check, what the error says it needs): ranges a value of the right type must also satisfy.
RANGES: list[tuple[str, Any, str]] = [
    ("data.val_fraction", lambda x: 0 < x < 1, "must be between 0 and 1"),
    ("data.height", lambda x: 16 <= x <= 4096, "must be between 16 and 4096 pixels"),
    ("data.width", lambda x: 16 <= x <= 4096, "must be between 16 and 4096 pixels"),
    ("data.batch_size", lambda x: x >= 1, "must be at least 1"),
    ("data.num_workers", lambda x: x >= -1, "must be -1 (automatic) or at least 0"),
    ("data.folds", lambda x: x >= 2, "must be at least 2"),
    ("data.fold", lambda x: x >= -1, "must be -1 (no fold) or a fold number"),
    ("data.face_margin", lambda x: x >= 0, "must be >= 0"),
    ("data.face_fallback", lambda x: x > 0, "must be > 0"),
    *((f"aug.{name}", _probability, "must be a probability between 0 and 1") for name in (
        "flip_p", "grayscale_p", "erasing_p", "blur_p", "jpeg_p", "lowres_p", "mix_prob", "mix_switch_prob",
        "halfmix_p", "brightness", "contrast", "saturation", "mask_colour_p", "mask_texture_p", "synthetic_mask_p",
        "synthetic_mask_photo_p", "mask_restyle_p", "mask_restyle_colour_p", "mask_restyle_pattern_p",
        "mask_restyle_slide_p", "mask_restyle_skin_p", "hand_p", "hand_skin_p", "hand_glove_p",
        "hand_mask_p", "hand_worn_p")),
    ("aug.hue", lambda x: 0 <= x <= 0.5, "must be between 0 and 0.5"),
    ("aug.temperature", lambda x: 0 <= x < 1, "must be between 0 and 1"),
    ("aug.noise_std", lambda x: x >= 0, "must be >= 0"),
    ("aug.mixup_alpha", lambda x: x >= 0, "must be >= 0"),
    ("aug.cutmix_alpha", lambda x: x >= 0, "must be >= 0"),
    ("aug.crop_height", lambda x: x >= 1, "must be at least 1"),
    ("aug.crop_width", lambda x: x >= 1, "must be at least 1"),
    ("model.drop_rate", lambda x: 0 <= x < 1, "must be between 0 and 1"),
    ("model.hidden", lambda x: x >= 1, "must be at least 1"),
    ("model.freeze", lambda x: x >= -1, "must be -1 (the whole backbone), 0 or a number of stages"),
    ("model.melt_epoch", lambda x: x >= 0, "must be >= 0"),
    ("model.melt_patience", lambda x: x >= 0, "must be >= 0"),
    ("loss.label_smoothing", lambda x: 0 <= x < 1, "must be between 0 and 1"),
    ("loss.gamma", lambda x: x >= 0, "must be >= 0"),
    ("loss.age_sigma", lambda x: x > 0, "must be > 0 (years)"),
    ("loss.age_weight", lambda x: x >= 0, "must be >= 0"),
    ("optim.lr", lambda x: x > 0, "must be > 0"),
    ("optim.head_lr", lambda x: x > 0, "must be > 0"),
    ("optim.layer_decay", lambda x: 0 < x <= 1, "must be in (0, 1]"),
    ("optim.weight_decay", lambda x: x >= 0, "must be >= 0"),
    ("optim.momentum", lambda x: 0 <= x < 1, "must be between 0 and 1"),
    ("sched.warmup_epochs", lambda x: x >= 0, "must be >= 0"),
    ("sched.min_lr", lambda x: x >= 0, "must be >= 0"),
    ("sched.decay_epochs", lambda x: x > 0, "must be > 0"),
    ("sched.decay_rate", lambda x: 0 < x <= 1, "must be in (0, 1]"),
    ("sched.patience", lambda x: x >= 0, "must be >= 0"),
    ("train.epochs", lambda x: x >= 1, "must be at least 1"),
    ("train.seed", lambda x: 0 <= x < 2**32, "must be between 0 and 4294967295"),
    ("train.threads", lambda x: x >= 0, "must be >= 0 (0 = all cores)"),
    ("train.early_stop", lambda x: x >= 0, "must be >= 0"),
    ("train.ema_decay", lambda x: 0 <= x < 1, "must be between 0 and 1"),
]


def _check_value(value: Any, typ: Any, key: str) -> Any:
    """Return ``value`` converted to ``typ`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option {key}: expected a list, got {value!r}")
        return [_check_value(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"option {key}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"option {key}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "3e-4" as a string (YAML 1.1)
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"option {key}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"option {key}: expected a string, got {value!r}")
    raise ConfigError(f"option {key}: unsupported type {typ}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"option {prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers too
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config option {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value or {}, key)
        else:
            kwargs[name] = _check_value(value, typ, key)
    return cls(**kwargs)


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "data.root=/x"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: {key!r} is not an option name (section.key)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from err
        node = nested
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with {'.'.join(parts[:depth + 1])}={node!r}")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override {item!r} conflicts with the {key} options given before it")
        node[parts[-1]] = value
    return nested


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then the dotted overrides; validated at every level."""
    data: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
        except OSError as err:
            raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        data = loaded
    data = _deep_update(data, parse_overrides(overrides or []))
    return config_from_dict(data)


def save_config(cfg: Config, path: str | Path) -> None:
    from facemask.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
