"""What a run reads before its first step, and what its loader leaves behind after its last:

* a streamed run reads nothing but its first batch, a resident ``prepared`` one each image
  once, as consecutive file reads in this process (time to the first step is measured by
  benchmarks/datasets.py; these tests count the reads that made it slow);
* a streamed run stopped by Ctrl-C leaves no DataLoader worker running (the run closes its
  sampler however it ends; a finished one's workers would also go with the garbage collector).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ganforge_core import DataError, Dataset, RunConfig, hookimpl, residency
from ganforge_core.session import Interrupted, train
from ganforge_core.streaming import StreamingSampler
from ganforge_datasets import prepare as prepare_module
from ganforge_datasets.prepared import PreparedSource, open_prepared
from ganforge_datasets.sources import as_dataset
from test_data_formats import write_folder
from test_reliability import SignalAt
from test_reliability_resume import plugins_with


class CountingSource:
    """32 random 1x8x8 uint8 images; every read appends its size to ``log``."""

    def __init__(self, log: list[object]) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=generator)
        self.shape, self.dtype, self.labels, self.log = (1, 8, 8), "uint8", None, log

    def __len__(self) -> int:
        return len(self.images)

    def read(self, indices: Sequence[int]) -> Tensor:
        self.log.append(len(indices))
        return self.images[list(indices)]


class Counted:
    def __init__(self, log: list[object]) -> None:
        self.log = log

    @hookimpl
    def ganforge_register_datasets(self, register):
        register("counted", lambda options, ctx: Dataset(source=CountingSource(self.log)), summary="counted reads",
                 traits={"image"})  # fmt: skip


def streamed_config(out: Path, workers: int) -> RunConfig:
    return RunConfig.model_validate({
        "generator": "mlp:hidden=8,depth=1", "discriminator": "mlp:hidden=8,depth=1", "dataset": "counted",
        "device": "cpu", "batch_size": 8, "steps": 3, "log_every": 1, "metrics": [], "out": str(out),
        "data_mode": "streamed", "data_workers": workers,
    })  # fmt: skip


def test_a_streamed_run_reads_nothing_before_its_first_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[object] = []
    draw = StreamingSampler.draw
    monkeypatch.setattr(StreamingSampler, "draw", lambda self, out=None: (log.append("draw"), draw(self, out))[1])
    # workers=0: the reads happen in this process, where the log sees them.
    train(streamed_config(tmp_path, 0), plugins=plugins_with(("counted", Counted(log))), quiet=True)
    # The monitors' data spread used to read samples at the run's start, before any batch.
    assert log[:2] == ["draw", 8], log
    assert log.count("draw") == 3


def test_a_prepared_dataset_is_made_resident_by_consecutive_reads_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_folder(tmp_path / "src", {"a": 5, "b": 5}, height=8, width=8)
    monkeypatch.setattr(prepare_module, "SHARD_BYTES", 4 * 3 * 8 * 8)  # shards of 4, 4 and 2 images
    prepare_module.prepare(tmp_path / "src", tmp_path / "prep", size=8, workers=1)
    source, _ = open_prepared(tmp_path / "prep")
    assert source.counts == [4, 4, 2]
    ranges: list[tuple[int, int, int]] = []
    read_range = PreparedSource._read_range

    def counted(self, begin, end, starts):
        ranges.append((os.getpid(), begin, end))
        return read_range(self, begin, end, starts)

    monkeypatch.setattr(PreparedSource, "_read_range", counted)
    monkeypatch.setattr(residency, "READ_CHUNK", 3)  # chunks that straddle the shards
    held = residency.resident_samples(as_dataset(source, 2, {}), torch.device("cpu"), workers=2)
    stored = np.concatenate([np.load(tmp_path / "prep" / name) for name in source.files])
    assert held.dtype == torch.uint8 and torch.equal(held, torch.from_numpy(stored))
    # In this process (no workers to copy the bytes twice), each image once, in order.
    assert ranges == [(os.getpid(), b, min(b + 3, 10)) for b in range(0, 10, 3)]
    assert torch.equal(source.read([5, 2, 9]), torch.from_numpy(stored[[5, 2, 9]]))  # a gather, not a range


def test_a_streamed_run_stopped_by_ctrl_c_leaves_no_loader_worker_running(tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())  # a Run another test built and left to the GC
    plugins = plugins_with(("counted", Counted([])), ("stop", SignalAt(2)))
    with pytest.raises(Interrupted) as raised:
        train(streamed_config(tmp_path, 2), plugins=plugins, quiet=True)
    # The exception's frames still hold the run here, as they do while the CLI reports it.
    assert raised.value.__traceback__ is not None
    assert [p for p in multiprocessing.active_children() if p not in before] == []


def test_a_shard_truncated_after_it_was_opened_fails_a_resident_read_in_one_line(tmp_path: Path) -> None:
    write_folder(tmp_path / "src", {"a": 4}, height=8, width=8)
    prepare_module.prepare(tmp_path / "src", tmp_path / "prep", size=8, workers=1)
    source, _ = open_prepared(tmp_path / "prep")
    shard = tmp_path / "prep" / source.files[0]
    shard.write_bytes(shard.read_bytes()[:-100])  # after its header was checked
    with pytest.raises(DataError) as raised:
        residency.resident_samples(as_dataset(source, 1, {}), torch.device("cpu"))
    assert str(raised.value) == f"dataset 'prepared': {shard} is truncated"
