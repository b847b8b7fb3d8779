"""Settings shared by the whole test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

SHARED_SCOPES = {"module", "package", "session"}


@pytest.fixture(autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """Tiny networks run fastest on one thread, above all on a machine shared with other test runs
    (or with the other pytest-xdist workers of this one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what ganforge caches (the digit classifier, dataset copies) out of the home
    directory: one temporary cache for the whole session, subprocesses included. Under
    pytest-xdist each worker has its own (tmp_path_factory is per worker), so no two
    processes write one cache at once. A worker's subprocesses get one torch thread each,
    as the worker itself has (a test that passes OMP_NUM_THREADS itself keeps its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("ganforge-cache")))
        if "PYTEST_XDIST_WORKER" in os.environ and "OMP_NUM_THREADS" not in os.environ:
            patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup``, the tests of a module that use one of its
    module- or session-scoped fixtures (a trained run, the built docs site, mypy's report)
    run on one worker: split over two, each worker would build the fixture again."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        definitions = getattr(item, "_fixtureinfo", None)
        shared = definitions is not None and any(
            fixture.scope in SHARED_SCOPES and fixture.baseid == module
            for fixtures in definitions.name2fixturedefs.values()
            for fixture in fixtures
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(module))
