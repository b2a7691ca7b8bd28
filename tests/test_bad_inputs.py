"""Every bad input through the CLI: one line `facemask: error: ...` naming the file or option, exit 2, no traceback,
nothing half-written. One table: a new subcommand or a new bad input is one more row.

Each row: (id, a function making the case and returning the argv, the exit code, a fragment the message holds).
"""
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facemask.cli import main
from facemask.training.trainer import fit

ROOT = Path(__file__).resolve().parents[1]


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


class Evil:
    """Pickled into a 'checkpoint': loading it would need weights_only=False (never)."""


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    from facemask.config import load_config

    out = tmp_path_factory.mktemp("bad")
    return fit(load_config("configs/tiny.yaml", [f"data.root={demo_root / 'train'}", f"train.output_dir={out}",
                                                 f"data.cache_dir={out / 'cache'}", "data.val_fraction=0.34"]))


@pytest.fixture
def case(demo_root, trained, tmp_path):
    """What a row's maker gets: fresh copies to damage, and the common arguments."""
    class Case:
        tmp = tmp_path
        run = trained
        data = demo_root

        def run_copy(self) -> Path:
            return Path(shutil.copytree(trained, tmp_path / "run"))

        def data_copy(self) -> Path:
            return Path(shutil.copytree(demo_root, tmp_path / "data"))

        def train(self, *overrides: str, root: Path | None = None) -> list[str]:
            return ["train", "-c", str(ROOT / "configs" / "tiny.yaml"), f"data.root={root or demo_root / 'train'}",
                    f"train.output_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}",
                    "data.val_fraction=0.34", *overrides]
    return Case()


def _info(case, rows: list[tuple[str, str]]) -> Path:
    data = case.data_copy()
    pd.DataFrame(rows, columns=["ImageID", "ans"]).to_csv(data / "eval" / "info.csv", index=False)
    return data


def _outside(case):
    data = case.data_copy()
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    info.loc[2, "ImageID"] = "../../train/train.csv"
    info.to_csv(data / "eval" / "info.csv", index=False)
    return ["predict", str(case.run), "--data", str(data / "eval"), "--out", str(case.tmp / "s.csv")]


def _absolute(case):
    data = case.data_copy()
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    info.loc[0, "ImageID"] = str(next((data / "eval" / "images").iterdir()).resolve())
    info.to_csv(data / "eval" / "info.csv", index=False)
    return ["predict", str(case.run), "--data", str(data / "eval"), "--out", str(case.tmp / "s.csv")]


def _duplicate_id(case):
    data = case.data_copy()
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[1, "id"] = people.loc[0, "id"]
    people.to_csv(data / "train" / "train.csv", index=False)
    return case.train(root=data / "train")


def _bomb_in_train(case, skip=False):
    data = case.data_copy()
    victim = next((data / "train" / "images").iterdir()) / "mask1.png"
    for old in victim.parent.glob("mask1.*"):
        old.unlink()
    bomb_png(victim)
    return case.train(*(["data.on_bad_image=skip"] if skip else []), root=data / "train")


def _bomb_in_predict(case):
    data = case.data_copy()
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    bomb_png(data / "eval" / "images" / info.ImageID.iloc[0])
    return ["predict", str(case.run), "--data", str(data / "eval"), "--out", str(case.tmp / "s.csv")]


def _yaml(case, content: bytes):
    path = case.tmp / "bad.yaml"
    path.write_bytes(content)
    return ["train", "-c", str(path)]


def _checkpoint(case, content, name="best.pt", command="predict"):
    run = case.run_copy()
    target = run / name
    if callable(content):
        content(target)
    else:
        target.write_bytes(content)
    if command == "predict":
        return ["predict", str(run), "--data", str(case.data / "eval"), "--out", str(case.tmp / "s.csv")]
    if command == "resume":
        (run / "last.pt").write_bytes(target.read_bytes()) if name != "last.pt" else None
        return ["train", "--resume", str(run)]
    return ["ensemble-search", str(run), str(case.run), "--out", str(case.tmp / "e.json")]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle_object(path: Path) -> None:
    torch.save({"config": {}, "model": Evil()}, path)


def _submission(case, values, info_columns=("ImageID", "ans")):
    info = pd.read_csv(case.data / "eval" / "info.csv", dtype=str)
    sub = info.assign(ans=[values[i % len(values)] for i in range(len(info))])
    sub.to_csv(case.tmp / "sub.csv", index=False)
    info_path = case.tmp / "info.csv"
    info[list(info_columns)].to_csv(info_path, index=False) if info_columns else info_path.write_text("x,y\n1,2\n")
    return sub


def _validate(case, values):
    _submission(case, values)
    return ["validate", str(case.tmp / "sub.csv"), "--info", str(case.data / "eval" / "info.csv")]


def _score(case, answers):
    info = pd.read_csv(case.data / "eval" / "info.csv", dtype=str)
    info.assign(ans=3).to_csv(case.tmp / "sub.csv", index=False)
    answers(info).to_csv(case.tmp / "answers.csv", index=False)
    return ["score", str(case.tmp / "sub.csv"), str(case.tmp / "answers.csv")]


def _killed_in_first_epoch(case):
    run = case.run_copy()
    (run / "last.pt").unlink()
    return ["train", "--resume", str(run)]


CASES = [
    # security: a run folder or data never makes facemask read outside what it should
    ("info.csv names ../..", _outside, 2, "line 4: ImageID '../../train/train.csv' names a file outside"),
    ("info.csv names an absolute path", _absolute, 2, "names a file outside"),
    # silent before
    ("duplicate id in train.csv", _duplicate_id, 2, "is also on line 2"),
    ("validate: label 3.0", lambda c: _validate(c, ["3.0"]), 1, None),
    ("validate: label 1e1", lambda c: _validate(c, ["1e1"]), 1, None),
    ("validate: label ' 3'", lambda c: _validate(c, [" 3"]), 1, None),
    ("score: answer 99", lambda c: _score(c, lambda i: i.assign(ans=99)), 2, "answers file"),
    ("score: an ImageID answered twice",
     lambda c: _score(c, lambda i: pd.concat([i.assign(ans=1), i[:1].assign(ans=2)])), 2, "appears more than once"),
    ("score: an answers file without rows", lambda c: _score(c, lambda i: i[:0].assign(ans=1)), 2, "has no rows"),
    # tracebacks before
    ("bomb in train", _bomb_in_train, 2, "decompression bomb"),
    ("bomb in predict", _bomb_in_predict, 2, "decompression bomb"),
    ("batch_size=0", lambda c: c.train("data.batch_size=0"), 2, "data.batch_size=0"),
    ("batch_size=-4", lambda c: c.train("data.batch_size=-4"), 2, "data.batch_size=-4"),
    ("lr=nan", lambda c: c.train("optim.lr=nan"), 2, "optim.lr=nan"),
    ("height=0", lambda c: c.train("data.height=0"), 2, "data.height=0"),
    ("override train.epochs=[", lambda c: c.train("train.epochs=["), 2, "train.epochs=["),
    ("override data=1 data.height=5", lambda c: c.train("data=1", "data.height=5"), 2, "override 'data=1' conflicts"),
    ("non-UTF-8 YAML", lambda c: _yaml(c, b"train:\n  name: caf\xe9\n"), 2, "is not UTF-8"),
    ("header-only info.csv", lambda c: ["predict", str(c.run), "--data", str(_info(c, []) / "eval"),
                                        "--out", str(c.tmp / "s.csv")], 2, "lists no images"),
    ("--out is a folder", lambda c: ["predict", str(c.run), "--data", str(c.data / "eval"), "--out", str(c.tmp)],
     2, "is a folder"),
    ("0-byte best.pt", lambda c: _checkpoint(c, b""), 2, "is empty (0 bytes)"),
    ("0-byte last.pt on resume", lambda c: _checkpoint(c, b"", "last.pt", "resume"), 2, "is empty (0 bytes)"),
    ("truncated best.pt in ensemble-search", lambda c: _checkpoint(c, _truncate, command="ensemble"), 2,
     "truncated or corrupt"),
    ("not a checkpoint", lambda c: _checkpoint(c, _pickle_object), 2, "is not a facemask checkpoint"),
    ("validate --info without ImageID", lambda c: (_submission(c, ["1"], ()), ["validate", str(c.tmp / "sub.csv"),
                                                                          "--info", str(c.tmp / "info.csv")])[1],
     2, "has no column 'ImageID'"),
    ("score: answers without ans", lambda c: _score(c, lambda i: i.drop(columns="ans")), 2, "has no column 'ans'"),
    ("score: answers without ImageID", lambda c: _score(c, lambda i: i.drop(columns="ImageID")), 2,
     "has no column 'ImageID'"),
    ("score: answer x", lambda c: _score(c, lambda i: i.assign(ans="x")), 2, "ans 'x'"),
    ("resume: killed in the first epoch", _killed_in_first_epoch, 2, "never finished an epoch"),
    ("eval: no such run", lambda c: ["eval", str(c.tmp / "nope")], 2, "nope"),
    ("predict: bad --device", lambda c: ["predict", str(c.run), "--data", str(c.data / "eval"), "--device", "tpu"],
     2, "--device='tpu'"),
    ("predict: --device cuda without one", lambda c: ["predict", str(c.run), "--data", str(c.data / "eval"),
                                                       "--device", "cuda"], 2, "--device=cuda"),
    ("export --out folder", lambda c: ["export", str(c.run), "--out", str(c.tmp)], 2, "is a folder"),
    ("report of a non-run", lambda c: ["report", str(c.tmp)], 2, "not found"),
    ("demo-data --people 0", lambda c: ["demo-data", str(c.tmp / "d"), "--people", "0"], 2, "--people 0"),
    ("sweep --trials 0", lambda c: ["sweep", "-c", str(ROOT / "configs" / "tiny.yaml"), "--space", "x.yaml",
                                    "--trials", "0"], 2, "--trials 0"),
    ("predict --weights nan", lambda c: ["predict", str(c.run), "--data", str(c.data / "eval"), "--weights", "nan"],
     2, "--weights"),
    ("check-data of an empty folder", lambda c: ["check-data", str(c.tmp)], 2, "holds neither train.csv"),
    ("train.seed too large", lambda c: c.train("train.seed=2000000000000000"), 2, "train.seed=2000000000000000"),
    ("--folds more than people", lambda c: ["train", "--folds", "1000", *c.train()[1:]], 2, "at most"),
    ("data.folds more than people", lambda c: c.train("data.folds=1000", "data.fold=0"), 2, "at most"),
    ("YAML keys of two types", lambda c: _yaml(c, b"1: 2\nfoo: 3\n"), 2, "unknown config option"),
    ("score: a 5,000-digit answer", lambda c: _score(c, lambda i: i.assign(ans="9" * 5000)), 2, "ans '99999"),
]


QUIET = ("train", "predict", "eval", "ensemble-search", "check-data")


def error_lines(stderr: str) -> list[str]:
    """The error lines of a command's stderr (its log lines and progress bars are not errors); no traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("facemask: error")]


@pytest.mark.parametrize("name,make,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_it(case, capsys, name, make, code, message):
    argv = make(case)
    if argv[0] in QUIET:
        argv = [*argv, "-q"]  # progress bars are not error lines
    capsys.readouterr()
    assert main(argv) == code, name
    captured = capsys.readouterr()
    if code == 2:
        err = captured.err.strip()
        assert err.startswith("facemask: error: ") and len(err.splitlines()) == 1, err
        assert message in err, err
        assert "weights_only" not in err and "Traceback" not in err
    runs = case.tmp / "runs"
    if argv[0] == "train" and code == 2:  # checked before any run folder or cache was written
        assert not runs.exists() or not any(runs.iterdir()), name


def test_eval_of_a_checkpoint_writes_beside_it(case, capsys):
    run = case.run_copy()
    assert main(["eval", str(run / "best.pt"), "-q"]) == 0
    assert (run / "eval-val.json").is_file()


def test_validate_accepts_plain_integers_only(case, capsys):
    for values, ok in ((["3"], True), (["3.0"], False), (["1e1"], False), ([" 3"], False), (["18"], False),
                       (["-1"], False)):
        capsys.readouterr()
        code = main(_validate(case, values))
        out = capsys.readouterr().out
        assert code == (0 if ok else 1), values
        if not ok:
            assert f"ans {values[0]!r}" in out


def test_bomb_is_listed_by_check_data_and_skipped_by_training(case, capsys):
    argv = _bomb_in_train(case, skip=True)
    assert main(argv) == 0
    (run,) = (case.tmp / "runs").iterdir()
    skipped = pd.read_csv(run / "skipped_images.csv")
    assert len(skipped) == 1 and "decompression bomb" in skipped.problem.iloc[0]
    capsys.readouterr()
    assert main(["check-data", str(case.tmp / "data"), "-q"]) == 1
    assert "decompression bomb" in capsys.readouterr().out


def test_check_data_lists_files_outside_the_eval_folder_and_duplicate_ids(case, capsys):
    _outside(case)
    people = pd.read_csv(case.tmp / "data" / "train" / "train.csv", dtype=str)
    people.loc[3, "id"] = people.loc[2, "id"]
    people.to_csv(case.tmp / "data" / "train" / "train.csv", index=False)
    assert main(["check-data", str(case.tmp / "data"), "-q"]) == 1
    out = capsys.readouterr().out
    assert "names a file outside" in out and "is also on line" in out


def test_sixteen_bit_greyscale_png_is_scaled_not_white(tmp_path):
    from facemask.data.images import load_image

    ramp = (np.arange(64 * 32).reshape(32, 64) * 30).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    pixels = load_image(tmp_path / "g16.png")
    assert pixels.shape == (32, 64, 3) and (pixels[..., 0] == pixels[..., 2]).all()
    np.testing.assert_allclose(pixels[..., 0], np.round(ramp / 257), atol=1)  # 0..65535 -> 0..255, not all white


def test_outputs_keep_the_users_umask(case, demo_root):
    old = os.umask(0o022)
    try:
        assert main(case.train("train.epochs=1", "track.mlflow=false")) == 0
        (run,) = (case.tmp / "runs").iterdir()
        sub = case.tmp / "sub.csv"
        assert main(["predict", str(run), "--data", str(demo_root / "eval"), "--out", str(sub), "-q"]) == 0
        for path in (run / "best.pt", run / "last.pt", run / "metrics.csv", run / "config.yaml", sub):
            assert path.stat().st_mode & 0o777 == 0o644, path
        meta = next((case.tmp / "cache").glob("*.json"))
        assert meta.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_runs_without_a_store_says_no_runs_yet_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def _limited(limit: int):
    """preexec_fn: a file-size limit (writes past it fail with EFBIG, as on a full disk)."""
    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_on_checkpoint_and_cache_is_one_clear_line(case):
    """A file-size limit in a child process stands in for a full disk: the checkpoint save and the cache build each
    fail with one line naming the place, and an earlier last.pt stays loadable."""
    run = case.run_copy()
    before = torch.load(run / "last.pt", weights_only=True)
    cfg_args = case.train("train.epochs=1")
    warm = subprocess.run([sys.executable, "-m", "facemask", *cfg_args, "-q"], capture_output=True, text=True)
    assert warm.returncode == 0, warm.stderr  # the cache exists now: the next run writes only its run folder
    full = subprocess.run([sys.executable, "-m", "facemask", *cfg_args, "-q"], capture_output=True, text=True,
                          preexec_fn=_limited(20_000))
    (err,) = error_lines(full.stderr)
    assert full.returncode == 2 and "cannot write" in err and ".pt" in err and "disk full" in err, err
    cache_args = [a if not a.startswith("data.cache_dir=") else f"data.cache_dir={case.tmp / 'cache2'}"
                  for a in cfg_args]
    full = subprocess.run([sys.executable, "-m", "facemask", *cache_args, "-q"], capture_output=True, text=True,
                          preexec_fn=_limited(20_000))
    (err,) = error_lines(full.stderr)
    assert full.returncode == 2 and str(case.tmp / "cache2") in err and "disk full" in err, err
    after = torch.load(run / "last.pt", weights_only=True)
    assert after["epoch"] == before["epoch"]


def test_a_run_folder_cannot_make_facemask_import_code(case, demo_root):
    """A run whose saved config names data.face_crop=evil_module:factory, with evil_module.py beside it and the
    working folder on sys.path (python -m facemask): predict and eval refuse without --trust-run-code and the
    module is never imported; with the flag the user's choice is honoured."""
    run = case.run_copy()
    marker = case.tmp / "imported.txt"
    (run / "evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "def factory():\n    return lambda rgb: []\n")
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["config"]["data"]["face_crop"] = "evil_module:factory"
        state["finished"] = False  # so that --resume goes as far as building the decoding
        torch.save(state, run / name)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("face_crop: none", "face_crop: evil_module:factory"))
    for argv in (["predict", str(run), "--data", str(demo_root / "eval"), "--out", str(case.tmp / "s.csv")],
                 ["predict", str(run), str(next((demo_root / "eval" / "images").iterdir()))],
                 ["eval", str(run)], ["train", "--resume", str(run)], ["report", str(run)],
                 ["ensemble-search", str(run), str(run)], ["export", str(run)]):
        quiet = ["-q"] if argv[0] in QUIET else []
        result = subprocess.run([sys.executable, "-m", "facemask", *argv, *quiet], capture_output=True, text=True,
                                cwd=run)
        if argv[0] in ("export",):  # export reads only the weights and the decoding's name
            assert not marker.exists()
            continue
        errors = error_lines(result.stderr)
        assert result.returncode == 2 and len(errors) == 1 and "--trust-run-code" in errors[0], (argv, result.stderr)
        assert not marker.exists(), argv
    result = subprocess.run([sys.executable, "-m", "facemask", "predict", str(run), "--data", str(demo_root / "eval"),
                             "--out", str(case.tmp / "s.csv"), "-q", "--trust-run-code"], capture_output=True,
                            text=True, cwd=run)
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "ran"
