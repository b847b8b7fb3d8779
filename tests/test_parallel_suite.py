"""``make test`` runs the suite on pytest-xdist workers (``-n auto --dist loadgroup``): the
tests of a module that share one of its module-scoped fixtures are grouped onto one worker
(tests/conftest.py), so the fixture is built once, not once per worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared() -> int:
    return 1


def test_a_test_using_its_modules_shared_fixture_is_in_the_modules_group(
    shared: int, request: pytest.FixtureRequest
) -> None:
    marker = request.node.get_closest_marker("xdist_group")
    assert marker is not None and marker.args == ("tests/test_parallel_suite.py",)


def test_a_test_without_one_is_in_no_group(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("xdist_group") is None


def test_make_test_runs_the_workers_with_loadgroup() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n\t(.*)$", makefile, re.MULTILINE)
    assert recipe is not None and recipe.group(1) == "$(BIN)/pytest $(PARALLEL) $(ARGS)"
    assert re.search(r"^PARALLEL := -n \$\(WORKERS\) --dist loadgroup$", makefile, re.MULTILINE)
    assert re.search(r"^WORKERS \?= auto$", makefile, re.MULTILINE)
