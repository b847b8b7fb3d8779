"""Settings shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """Tiny networks run fastest on one thread, above all on a machine shared with other test runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what ganforge caches (the digit classifier, dataset copies) out of the home
    directory: one temporary cache for the whole session, subprocesses included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("ganforge-cache")))
        yield
