"""Preflight (facemask check-data) and data.on_bad_image, through the CLI and the config."""
import shutil

import pandas as pd
import pytest

from facemask.cli import main
from facemask.errors import DataError
from facemask.training.trainer import fit


def _folders(root):
    return sorted((root / "train" / "images").iterdir())


def _break_everything(root):
    """One of each problem; returns the names each message must contain."""
    folders = _folders(root)
    next(folders[0].glob("mask1.*")).write_bytes(b"")                                   # zero-byte file
    data = next(folders[1].glob("mask2.*")).read_bytes()
    next(folders[1].glob("mask2.*")).write_bytes(data[: len(data) // 4])                # truncated JPEG
    next(folders[2].glob("mask3.*")).write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)      # corrupt JPEG
    next(folders[3].glob("normal.*")).unlink()                                          # missing image
    shutil.copy(next(folders[4].glob("mask4.*")), folders[4] / "mask9.jpg")            # extra image
    folders[5].rename(folders[5].with_name(folders[5].name + "_renamed"))              # folder != train.csv
    people = pd.read_csv(root / "train" / "train.csv", dtype=str)
    people.loc[people.path == folders[6].name, "age"] = "forty"                        # non-numeric age
    people.to_csv(root / "train" / "train.csv", index=False)
    info = pd.read_csv(root / "eval" / "info.csv", dtype=str)
    (root / "eval" / "images" / info.ImageID.iloc[0]).unlink()                         # info.csv names a missing image
    return [f"{folders[0].name}/mask1", f"{folders[1].name}/mask2", f"{folders[2].name}/mask3",
            f"{folders[3].name}: image normal is missing", "unexpected image mask9.jpg",
            f"{folders[5].name} listed in train.csv does not exist", f"{folders[5].name}_renamed is not listed",
            "age 'forty' is not a whole number", info.ImageID.iloc[0]]


def test_check_data_lists_every_problem_with_its_file(demo_copy, capsys):
    expected = _break_everything(demo_copy)
    code = main(["check-data", str(demo_copy), "-q"])
    out = capsys.readouterr().out
    assert code == 1
    for fragment in expected:
        assert fragment in out, fragment
    assert "8 problems found" in out  # the unlisted folder is a warning, not a problem
    assert "images per class:" in out and "people per age group" in out


def test_check_data_on_clean_data(demo_root, capsys):
    assert main(["check-data", str(demo_root), "-q"]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "18 people, 126 images" in out


def _corrupt_two_images(root):
    folders = _folders(root)
    victims = [next(folders[0].glob("mask1.*")), next(folders[1].glob("normal.*"))]
    for victim in victims:
        victim.write_bytes(b"not an image")
    return victims


def test_bad_image_stops_training_before_it_starts(demo_copy, tiny_config, tmp_path):
    victims = _corrupt_two_images(demo_copy)
    with pytest.raises(DataError, match=f"{victims[0].name}.*2 bad images in all"):
        fit(tiny_config(f"data.root={demo_copy / 'train'}", "data.cache=false"))
    assert not (tmp_path / "runs").exists()  # no run folder for a run that never started


def test_bad_image_skip_leaves_it_out_and_counts_it(demo_copy, tiny_config):
    victims = _corrupt_two_images(demo_copy)
    run = fit(tiny_config(f"data.root={demo_copy / 'train'}", "data.on_bad_image=skip"))
    skipped = pd.read_csv(run / "skipped_images.csv")
    assert sorted(skipped.file) == sorted(map(str, victims))
    assert skipped.problem.str.contains("cannot be decoded").all()
