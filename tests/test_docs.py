"""The README's config reference must name every option with its real default."""
import dataclasses
import json
from pathlib import Path

from facemask.config import Config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_option_is_documented_with_its_default():
    rows = [row for row in README.splitlines() if row.startswith("| `")]
    defaults = Config()
    for section in dataclasses.fields(Config):
        values = getattr(defaults, section.name)
        for option in dataclasses.fields(values):
            default = getattr(values, option.name)
            key = f"`{section.name}.{option.name}`"
            line = next((row for row in rows if key in row.split("|")[1]), None)
            assert line is not None, f"{key} missing from the README's config reference"
            shown = json.dumps(default) if not isinstance(default, (str, float)) else (
                f'"{default}"' if default == "" else str(default))
            assert shown.lower().replace('"', "") in line.lower().replace('"', ""), (key, shown)


def test_readme_starts_with_the_two_commands():
    head = "\n".join(README.splitlines()[:15])
    assert "make demo" in head and "make test" in head


def test_readme_has_predict_your_own_photos_and_serve_near_the_top():
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Predict your own photos", "## Serve"]
    assert "import facemask" in README and "curl -F file=@photo.jpg" in README


def test_version_help_defaults_and_flags_after_the_subcommand(capsys):
    import pytest

    from facemask import __version__
    from facemask.cli import build_parser, main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"facemask {__version__}"
    args = build_parser().parse_args(["train", "-q", "-v", "train.epochs=1"])
    assert args.quiet and args.verbose and args.overrides == ["train.epochs=1"]
    assert build_parser().parse_args(["-v", "eval", "run"]).verbose
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "(default: auto)" in capsys.readouterr().out


def test_every_command_line_argument_has_help():
    import argparse

    from facemask.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [f"{name} {action.dest}" for name, sub in commands.items() for action in sub._actions
               if action.help is None and not isinstance(action, argparse._HelpAction)]
    assert not missing
