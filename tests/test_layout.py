import shutil

import pandas as pd
import pytest
from PIL import Image

from facemask.data.layout import read_eval, read_train
from facemask.errors import DataError


def _first_folder(root):
    return sorted((root / "train" / "images").iterdir())[0]


def test_reads_mixed_extensions_and_ignores_dot_files(demo_copy):
    folder = _first_folder(demo_copy)
    src = next(folder.glob("mask2.*"))
    Image.open(src).save(folder / "mask2.png")
    src.unlink()
    src = next(folder.glob("normal.*"))
    src.rename(folder / "normal.jpeg")
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "._mask1.jpg").write_bytes(b"apple double")
    samples = read_train(demo_copy / "train")
    people = pd.read_csv(demo_copy / "train" / "train.csv")
    assert len(samples) == 7 * len(people)
    files = set(samples.file)
    assert str(folder / "mask2.png") in files and str(folder / "normal.jpeg") in files
    assert sorted(samples.groupby("mask").size().tolist()) == [len(people), len(people), 5 * len(people)]
    assert samples.label.between(0, 17).all()


def test_accepts_the_parent_folder_too(demo_root):
    assert len(read_train(demo_root)) == len(read_train(demo_root / "train"))


@pytest.mark.parametrize("damage,message", [
    ("missing_image", "image incorrect_mask is missing"),
    ("duplicate_image", "mask1 appears twice"),
    ("missing_folder", "does not exist"),
    ("unknown_gender", "unknown gender 'robot'"),
    ("bad_age", "age 'old' is not a whole number"),
    ("missing_column", "no column 'age'"),
    ("unexpected_image", "unexpected image mask9.jpg"),
])
def test_rejects_broken_layouts_with_a_message_naming_the_place(demo_copy, damage, message):
    folder = _first_folder(demo_copy)
    csv = demo_copy / "train" / "train.csv"
    people = pd.read_csv(csv, dtype=str)
    if damage == "missing_image":
        next(folder.glob("incorrect_mask.*")).unlink()
    elif damage == "duplicate_image":
        shutil.copy(next(folder.glob("mask1.*")), folder / "mask1.png")
    elif damage == "missing_folder":
        shutil.rmtree(folder)
    elif damage == "unexpected_image":
        shutil.copy(next(folder.glob("mask1.*")), folder / "mask9.jpg")
    elif damage == "unknown_gender":
        people.loc[people.path == folder.name, "gender"] = "robot"
    elif damage == "bad_age":
        people.loc[people.path == folder.name, "age"] = "old"
    elif damage == "missing_column":
        people = people.drop(columns="age")
    people.to_csv(csv, index=False)
    with pytest.raises(DataError, match=message) as err:
        read_train(demo_copy / "train")
    text = str(err.value)
    assert folder.name in text or "train.csv" in text
    assert "\n" not in text


def test_eval_layout_keeps_info_order_and_names_a_missing_image(demo_copy):
    info, table = read_eval(demo_copy / "eval")
    assert table.image_id.tolist() == pd.read_csv(demo_copy / "eval" / "info.csv").ImageID.tolist()
    victim = info.ImageID.iloc[3]
    (demo_copy / "eval" / "images" / victim).unlink()
    with pytest.raises(DataError, match=victim):
        read_eval(demo_copy / "eval")


def test_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="holds no train.csv"):
        read_train(tmp_path)
