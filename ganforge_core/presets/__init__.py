"""Named presets: shipped TOML files of RunConfig settings that reach a measured quality bar.

``ganforge run --preset NAME`` starts from one (a ``--config`` file and flags
override it); ``ganforge bench DATASET`` trains the preset named like the
dataset. ``docs/benchmarks.md`` has what each one measured, with the command.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ganforge_core.errors import ConfigError

DIRECTORY = Path(__file__).resolve().parent


def names() -> list[str]:
    """Every shipped preset, sorted."""
    return sorted(path.stem for path in DIRECTORY.glob("*.toml"))


def path_of(name: str) -> Path:
    path = DIRECTORY / f"{name}.toml"
    if name not in names():
        raise ConfigError(f"unknown preset '{name}'; valid: {', '.join(names())}")
    return path


def load(name: str) -> dict[str, Any]:
    """The preset's settings (RunConfig fields), without its comments."""
    return tomllib.loads(path_of(name).read_text(encoding="utf-8"))


def summary(name: str) -> str:
    """The first comment line of the preset file: what it is for."""
    for line in path_of(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
