"""The README's examples are real: each error it shows is what the CLI prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHOWN = re.findall(r"^\$ ganforge (.+)\n(error: .+)$", README, re.MULTILINE)


def test_the_readme_shows_error_examples() -> None:
    assert len(SHOWN) >= 2


@pytest.mark.parametrize(("arguments", "shown"), SHOWN, ids=[a for a, _ in SHOWN])
def test_each_error_the_readme_shows_is_what_the_cli_prints(arguments: str, shown: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ganforge_core", *shlex.split(arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [shown]


def test_the_readme_puts_the_two_setup_commands_first() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "run"], ["make", "test"]]
