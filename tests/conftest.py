"""Fixtures: a tiny synthetic dataset (made by facemask's own demo generator) and a tiny composed config."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facemask.config import load_config
from facemask.data.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network in tests


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """24 people: 18 in train/, 6 in eval/ (read-only for tests; copy it to break it), in the generator's test mode:
    a strong cue per attribute, so that the tiny model learns and the metrics tests compare are well above 0."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", people=24, eval_fraction=0.25, seed=1,
                             easy=True)


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A private copy of the demo data that a test may damage."""
    target = tmp_path / "data"
    shutil.copytree(demo_root, target)
    return target


@pytest.fixture
def tiny_config(demo_root, tmp_path):
    """Compose configs/tiny.yaml with the test's data and output folders (like hydra's compose in tests)."""
    def compose(*overrides: str):
        return load_config(ROOT / "configs" / "tiny.yaml", [
            f"data.root={demo_root / 'train'}", f"train.output_dir={tmp_path / 'runs'}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.val_fraction=0.34", *overrides])
    return compose


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for the browser tests; missing, it fails the run under CI=true and skips elsewhere."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    reason = "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def masked_filter(demo_root, tmp_path_factory) -> Path:
    """A masked-face filter trained with `facemask train-detector` on the demo's train people (about 4 s)."""
    from facemask.cli import main

    out = tmp_path_factory.mktemp("filter") / "masked.svm"
    assert main(["train-detector", str(demo_root / "train"), "--out", str(out)]) == 0
    return out
