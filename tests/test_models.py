import pytest
import torch

from facemask.config import ModelConfig
from facemask.errors import ConfigError, FacemaskError
from facemask.models.factory import create_model
from facemask.models.pretrained import lite_weights_file


def test_imagenet_lite_weights_load_strictly_into_timm():
    model = create_model(ModelConfig(name="efficientnet_lite0", pretrained="imagenet-lite"))
    source = torch.load(lite_weights_file(0), map_location="cpu", weights_only=True)
    backbone = model.backbone.state_dict()
    torch.testing.assert_close(backbone["conv_stem.weight"], source["_conv_stem.weight"])
    torch.testing.assert_close(backbone["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(backbone["bn2.running_var"], source["_bn1.running_var"])
    assert torch.allclose(model.mean, torch.full((1, 3, 1, 1), 127.5))  # TF-Lite normalisation
    model.eval()
    out = model(torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8))
    assert out.shape == (2, 18)


def test_imagenet_lite_only_for_lite_models():
    with pytest.raises(ConfigError, match="imagenet-lite is available for"):
        create_model(ModelConfig(name="resnet18", pretrained="imagenet-lite"))


def test_any_timm_backbone_without_weights():
    model = create_model(ModelConfig(name="resnet18", pretrained="none"))
    assert model(torch.zeros(1, 3, 64, 48)).shape == (1, 18)


def test_unknown_model_and_head_names():
    with pytest.raises(ConfigError, match="model.name='resnet9000'"):
        create_model(ModelConfig(name="resnet9000", pretrained="none"))
    with pytest.raises(ConfigError, match="model.head='tower'"):
        create_model(ModelConfig(name="test_efficientnet", pretrained="none", head="tower"))


def test_hub_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FacemaskError, match="model.pretrained=hub: could not get resnet18"):
        create_model(ModelConfig(name="resnet18", pretrained="hub"))


def test_weights_file_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_efficientnet", pretrained="none"))
    path = tmp_path / "w.pt"
    torch.save({"model": model.state_dict()}, path)
    loaded = create_model(ModelConfig(name="test_efficientnet", pretrained=str(path)))
    torch.testing.assert_close(loaded.state_dict()["head.1.weight"], model.state_dict()["head.1.weight"])
    with pytest.raises(FacemaskError, match="w.pt does not fit model"):
        create_model(ModelConfig(name="resnet18", pretrained=str(path)))
    with pytest.raises(ConfigError, match="neither"):
        create_model(ModelConfig(name="resnet18", pretrained=str(tmp_path / "missing.pt")))
