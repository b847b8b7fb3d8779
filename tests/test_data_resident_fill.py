"""A memory-mapped source made resident is filled in a background thread (residency.BackgroundFill):

* batches drawn while it fills (rows of chunks not filled yet read from the source) are
  bit-identical to those of a sampler whose samples were read whole first: across the fill's
  end, mirrored, into ``out=`` buffers (the CUDA graph's draw), with labels, per rank;
* the thread's error (a truncated shard) is the next draw's one-line DataError, never a hang;
* ``close`` (the run's, however it ends) stops the thread and joins it;
* a run on a ``prepared`` directory with ``--data-mode resident`` trains while it fills and
  resumes exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ganforge_core import DataError, RunConfig, residency
from ganforge_core import checkpoint as ckpt
from ganforge_core.batches import Batch, BatchSampler, Order
from ganforge_core.residency import BackgroundFill
from ganforge_core.session import Interrupted, train
from ganforge_datasets import prepare as prepare_module
from ganforge_datasets.prepared import PreparedSource, open_prepared
from ganforge_datasets.sources import as_dataset
from test_data_formats import write_folder
from test_data_sources import assert_same_batches, draws
from test_reliability import SignalAt, assert_identical
from test_reliability_resume import plugins_with

N, SHAPE, CHUNK = 50, (3, 4, 4), 8
FILLER = "ganforge-resident-fill"


def in_filler() -> bool:
    return threading.current_thread().name == FILLER


class GatedSource:
    """A mapped source of random uint8 images in [1, 255] (an unfilled, zeroed row never matches one).

    The filler's read of the chunk starting at ``gate`` waits for :attr:`release` (after setting
    :attr:`reached`); its read of a chunk holding ``fail`` raises DataError; each of its reads
    sleeps ``delay`` s. Reads of the training thread are never held up nor failed."""

    mapped = True

    def __init__(self, gate: int | None = None, fail: int | None = None, delay: float = 0.0) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(1, 256, (N, *SHAPE), dtype=torch.uint8, generator=generator)
        self.shape, self.dtype, self.labels = SHAPE, "uint8", torch.arange(N) % 5
        self.gate, self.fail, self.delay = gate, fail, delay
        self.reached, self.release = threading.Event(), threading.Event()
        self.filled: list[int] = []  # the first index of each chunk the filler read

    def __len__(self) -> int:
        return N

    def read(self, indices: Sequence[int]) -> Tensor:
        indices = list(indices)
        if in_filler():
            self.filled.append(indices[0])
            if indices[0] == self.gate:
                self.reached.set()
                assert self.release.wait(30)
            if self.fail is not None and self.fail in indices:
                raise DataError(f"dataset 'gated': cannot read image {self.fail}: truncated")
            time.sleep(self.delay)
        return self.images[indices]


def filling(source: GatedSource, layout=torch.contiguous_format, chunk: int = CHUNK) -> tuple[BackgroundFill, Tensor]:
    samples = torch.zeros_like(source.images).contiguous(memory_format=layout)
    return BackgroundFill(source, samples, chunk), samples


@pytest.mark.parametrize(
    ("mirror", "shard", "layout"),
    [(False, (0, 1), torch.contiguous_format), (True, (0, 1), torch.contiguous_format),
     (True, (1, 2), torch.channels_last), (False, (3, 4), torch.channels_last)],
)  # fmt: skip
def test_batches_drawn_while_filling_are_those_of_the_sampler_read_whole(mirror, shard, layout) -> None:
    source = GatedSource(gate=3 * CHUNK)  # chunks 0-2 filled; 3 and after wait
    fill, samples = filling(source, layout)
    sampler = BatchSampler(samples, 8, 3, source.labels, shard=shard, mirror=mirror, filling=fill)
    whole = source.images.clone().contiguous(memory_format=layout)
    reference = BatchSampler(whole, 8, 3, source.labels, shard=shard, mirror=mirror)
    share = 8 // shard[1]

    def into() -> Batch:
        return Batch(torch.empty(share, *SHAPE).contiguous(memory_format=layout), torch.empty(share, dtype=torch.long))

    assert source.reached.wait(30)
    got = draws(sampler, 5) + draws(sampler, 3, out=into())
    assert sampler._filling is fill and not torch.equal(samples[3 * CHUNK :], whole[3 * CHUNK :])  # still filling
    source.release.set()
    fill._thread.join(30)
    got += draws(sampler, 4) + draws(sampler, 3, out=into())
    assert sampler._filling is None  # filled: the plain path
    want = draws(reference, 5) + draws(reference, 3, out=into()) + draws(reference, 4) + draws(reference, 3, out=into())
    assert_same_batches(want, got)
    assert torch.equal(samples, whole)
    assert_identical(reference.state_dict(), sampler.state_dict(), "batches")
    # The batches drawn while filling named rows of the chunks not yet filled.
    order = Order(N * (2 if mirror else 1), 8, 3, shard)
    assert max(int(order.next().remainder(N).max()) for _ in range(8)) >= 3 * CHUNK


def test_the_fill_resumes_exactly_from_a_state_drawn_while_filling() -> None:
    source = GatedSource(gate=2 * CHUNK)
    fill, samples = filling(source)
    sampler = BatchSampler(samples, 8, 7, source.labels, mirror=True, filling=fill)
    assert source.reached.wait(30)
    draws(sampler, 4)
    state = sampler.state_dict()
    rest = draws(sampler, 3)
    source.release.set()
    rest += draws(sampler, 6)
    resumed = BatchSampler(source.images.clone(), 8, 999, source.labels, mirror=True)
    resumed.load_state_dict(state)
    assert_same_batches(draws(resumed, 9), rest)
    sampler.close()


def test_an_error_in_the_filler_is_the_next_draws_one_line_error() -> None:
    source = GatedSource(fail=3 * CHUNK + 2)
    fill, samples = filling(source)
    sampler = BatchSampler(samples, 8, 3, source.labels, filling=fill)
    fill._thread.join(30)
    assert not fill._thread.is_alive() and source.filled == [0, 8, 16, 24]  # it stopped at the error
    for _ in range(2):  # every draw after it, not only the first
        with pytest.raises(DataError) as raised:
            sampler.draw()
        assert str(raised.value) == f"dataset 'gated': cannot read image {3 * CHUNK + 2}: truncated"
    assert sampler.state_dict()["order"] is None  # the failed draws took no batch
    sampler.close()


def test_close_stops_the_filler_and_joins_it_and_the_batches_stay_right() -> None:
    source = GatedSource(delay=0.02)
    fill, samples = filling(source, chunk=1)  # 50 reads of 20 ms: a second
    sampler = BatchSampler(samples, 8, 3, source.labels, filling=fill)
    got = draws(sampler, 1)
    sampler.close()
    assert not fill._thread.is_alive() and len(source.filled) < N
    got += draws(sampler, 6)  # the rows never filled are read from the source
    assert_same_batches(draws(BatchSampler(source.images.clone(), 8, 3, source.labels), 7), got)


# -- a prepared directory ----------------------------------------------------------------


def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int = 12) -> Path:
    write_folder(tmp_path / "src", {"a": count // 2, "b": count - count // 2}, height=8, width=8)
    monkeypatch.setattr(prepare_module, "SHARD_BYTES", 4 * 3 * 8 * 8)  # shards of 4 images
    prepare_module.prepare(tmp_path / "src", tmp_path / "prep", size=8, workers=1)
    return tmp_path / "prep"


@pytest.mark.parametrize("filler_first", [True, False])
def test_a_shard_truncated_after_it_was_opened_fails_the_next_draw_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filler_first: bool
) -> None:
    source, _ = open_prepared(prepared(tmp_path, monkeypatch))
    shard = tmp_path / "prep" / source.files[2]  # images 8-11
    shard.write_bytes(shard.read_bytes()[:-100])  # after its header was checked
    release = threading.Event()
    read_range = PreparedSource._read_range

    def held(self, begin, end, starts):
        if in_filler() and not filler_first:
            assert release.wait(30)
        return read_range(self, begin, end, starts)

    monkeypatch.setattr(PreparedSource, "_read_range", held)
    dataset = as_dataset(source, 2, {})
    samples = residency.empty_samples(dataset, torch.device("cpu"), torch.contiguous_format)
    fill = BackgroundFill(source, samples, chunk=4)
    sampler = BatchSampler(samples, 12, 0, filling=fill)  # every image in each batch
    try:
        if filler_first:
            fill._thread.join(30)
        # Else not filled yet: the draw's own read of the truncated shard (a gather from its map
        # reads zeros past the end of the file, or is a SIGBUS for a whole page past it).
        with pytest.raises(DataError) as raised:
            sampler.draw()
        assert str(raised.value) == f"dataset 'prepared': {shard} is truncated"
    finally:
        release.set()
        sampler.close()
    assert not fill._thread.is_alive()


def slow_filler(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[int]:
    """Each chunk the filler reads from a prepared directory takes ``seconds``; the chunks' starts."""
    read_range, started = PreparedSource._read_range, []

    def slow(self, begin, end, starts):
        if in_filler():
            started.append(begin)
            time.sleep(seconds)
        return read_range(self, begin, end, starts)

    monkeypatch.setattr(PreparedSource, "_read_range", slow)
    monkeypatch.setattr(residency, "READ_CHUNK", 2)
    return started


def prepared_config(out: Path, root: Path, mode: str, **fields) -> RunConfig:
    return RunConfig.model_validate({
        "generator": "mlp:hidden=8,depth=1", "discriminator": "mlp:hidden=8,depth=1",
        "dataset": f"prepared:root={root}", "device": "cpu", "batch_size": 4, "steps": 10, "log_every": 1,
        "metrics": [], "out": str(out), "data_mode": mode, "data_workers": 0, **fields,
    })  # fmt: skip


def fill_threads(before: frozenset[threading.Thread] = frozenset()) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == FILLER and t not in before]


def test_a_resident_run_on_prepared_data_trains_while_filling_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = prepared(tmp_path, monkeypatch)
    plugins = plugins_with()
    reference = train(prepared_config(tmp_path / "reference", root, "streamed"), plugins=plugins, quiet=True)
    started = slow_filler(monkeypatch, 0.2)  # 6 chunks of 2: the first steps draw while it fills
    stopped, before = tmp_path / "stopped", frozenset(threading.enumerate())
    with pytest.raises(Interrupted) as raised:
        train(prepared_config(stopped, root, "resident"),
              plugins=plugins_with(("stop", SignalAt(2))), quiet=True)  # fmt: skip
    assert raised.value.__traceback__ is not None  # the run is still referenced, its thread joined
    assert fill_threads(before) == [] and len(started) < 6, started  # stopped mid-fill
    resumed = train(None, resume=stopped, plugins=plugins, quiet=True)
    assert fill_threads(before) == []
    assert resumed.step == reference.step == 10
    want, got = ckpt.load_safe(reference.checkpoint), ckpt.load_safe(resumed.checkpoint)
    for key in ("generator", "discriminator", "opt_g", "opt_d", "batches", "rng"):
        assert_identical(want[key], got[key], key)


def test_a_mapped_dataset_chosen_resident_says_it_fills_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = open_prepared(prepared(tmp_path, monkeypatch))
    cpu = torch.device("cpu")
    chosen = residency.choose(as_dataset(source, 2, {}), cpu, "resident")
    assert chosen.background and chosen.describe() == "data: resident (0.0 MB uint8, filled in the background)"
    assert not residency.choose(as_dataset(source, 2, {}), cpu, "streamed").background
    assert residency.choose(as_dataset(source, 2, {}), cpu, "auto", free=10**9).background
    # on CUDA it is read whole first: a filler's copies could run into a CUDA graph's capture
    assert not residency.choose(as_dataset(source, 2, {}), torch.device("cuda"), "resident").background
