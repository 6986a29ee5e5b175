"""The README's configuration table covers every setting config.py reads."""

from dataclasses import fields
from pathlib import Path

from algohost.config import SandboxSettings, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme():
    names = [f.name for f in fields(Settings) if f.name != "sandbox"]
    names += [f.name for f in fields(SandboxSettings)]
    missing = [n for n in names if f"`ALGOHOST_{n.upper()}`" not in README]
    assert not missing, f"README's configuration table lacks: {missing}"
