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
