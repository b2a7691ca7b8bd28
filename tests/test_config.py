import pytest

from facemask.config import Config, load_config, parse_overrides
from facemask.errors import ConfigError


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("optim:\n  lr: 1e-3\ndata:\n  height: 64\n")
    cfg = load_config(path, ["optim.lr=3e-4", "data.root=/some/where", "data.age_thresholds=[30, 58]",
                             "train.channels_last=false"])
    assert isinstance(cfg, Config)
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.height == 64 and cfg.data.root == "/some/where"
    assert cfg.data.age_thresholds == [30, 58] and cfg.train.channels_last is False


@pytest.mark.parametrize("override,message", [
    (["optim.lrr=1"], "unknown config option optim.lrr"),
    (["nosuch.key=1"], "unknown config option nosuch"),
    (["train.epochs=many"], "option train.epochs: expected an integer"),
    (["train.epochs=2.5"], "option train.epochs: expected an integer"),
    (["train.channels_last=3"], "option train.channels_last: expected true/false"),
    (["optim.lr=fast"], "option optim.lr: expected a number"),
    (["data.age_thresholds=30"], "option data.age_thresholds: expected a list"),
    (["optim"], "is not of the form"),
])
def test_bad_options_are_errors_naming_the_option(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  nmae: resnet18\n")
    with pytest.raises(ConfigError, match="model.nmae"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_parse_nested_values():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
