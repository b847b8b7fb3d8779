"""Data in its stored dtype: uint8 pixels scaled on the device, resident or streamed batches.

The resident sampler (batches.BatchSampler) and the streaming one (streaming.StreamingSampler,
DataLoader workers) must give the very same batches for a seed, resume exactly mid-epoch
however far the workers read ahead, split a global batch between ranks, and mirror exactly
the samples the doubled order names. ``--data-mode auto`` streams when the data does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from pydantic import Field
from torch import Tensor

from ganforge_core import DataError, Dataset, Options, RunConfig, hookimpl, resolve
from ganforge_core import checkpoint as ckpt
from ganforge_core import residency
from ganforge_core.batches import Batch, BatchSampler, Order
from ganforge_core.datasource import SampleSource, TensorSource, to_model_scale
from ganforge_core.errors import ConfigError
from ganforge_core.run import Run
from ganforge_core.session import Interrupted, train
from ganforge_core.streaming import StreamingSampler
from test_reliability import SignalAt, assert_identical
from test_reliability_resume import plugins_with

N, SHAPE = 50, (3, 4, 4)


def pixels(n: int = N, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class PixelSource:
    """A SampleSource of random uint8 images; reading index ``bad`` raises DataError."""

    def __init__(self, n: int = N, shape: tuple[int, ...] = SHAPE, bad: int | None = None) -> None:
        self.images = pixels(n, shape)
        self.shape, self.dtype, self.bad = shape, "uint8", bad
        self.labels = torch.arange(n) % 5

    def __len__(self) -> int:
        return len(self.images)

    def read(self, indices: Sequence[int]) -> Tensor:
        if self.bad is not None and self.bad in indices:
            raise DataError(f"dataset 'pixels': cannot read image {self.bad}.png: truncated")
        return self.images[list(indices)]


class PixelOptions(Options):
    n: int = Field(64, ge=1, description="images")
    bad: int = Field(-1, description="the index whose read fails (-1: none)")


class Pixels:
    """A plugin: the dataset ``pixels``, 1x8x8 uint8 images read by index from a source."""

    @hookimpl
    def ganforge_register_datasets(self, register):
        def build(options: PixelOptions, ctx) -> Dataset:
            bad = None if options.bad < 0 else options.bad
            return Dataset(source=PixelSource(options.n, (1, 8, 8), bad), num_classes=5)

        register("pixels", build, options=PixelOptions, summary="random pixels", traits={"image", "labelled"})


def pixel_config(out: Path, **fields) -> RunConfig:
    return RunConfig.model_validate(
        {
            "generator": "mlp:hidden=16,depth=1",
            "discriminator": "mlp:hidden=16,depth=1",
            "dataset": "pixels",
            "device": "cpu",
            "batch_size": 16,
            "steps": 10,
            "log_every": 1,
            "metrics": [],
            "out": str(out),
            **fields,
        }
    )


def draws(sampler, count: int, out: Batch | None = None) -> list[tuple[Tensor, Tensor | None]]:
    batches = []
    for _ in range(count):
        batch = sampler.draw(out=out)
        batches.append((batch.samples.clone(), None if batch.labels is None else batch.labels.clone()))
    return batches


def assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == torch.float32 and torch.equal(xa, xb)
        assert (ya is None and yb is None) or torch.equal(ya, yb)


# -- uint8 storage ------------------------------------------------------------------------


def test_uint8_pixels_become_x_over_127_5_minus_1_in_float32() -> None:
    every = torch.arange(256, dtype=torch.uint8).view(4, 1, 8, 8)
    want = torch.arange(256, dtype=torch.float32).view(4, 1, 8, 8) / 127.5 - 1
    assert torch.equal(to_model_scale(every), want)
    assert float(to_model_scale(every).min()) == -1.0 and float(to_model_scale(every).max()) == 1.0
    into = torch.empty(4, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    assert to_model_scale(every, out=into) is into and torch.equal(into, want)  # the CUDA graph's path
    points = torch.randn(5, 2)
    assert to_model_scale(points) is points  # float32 is already in the model's scale

    held = Dataset(samples=every, labels=torch.arange(4))
    assert held.storage_dtype == "uint8" and held.nbytes == 256 and held.shape == (1, 8, 8)
    assert torch.equal(held.take([2, 0]), want[[2, 0]]) and torch.equal(held.read([3]), every[[3]])
    assert torch.equal(held.evenly_spaced(2), want[[0, 2]])
    read = Dataset(source=TensorSource(every, torch.arange(4)))
    assert len(read) == 4 and torch.equal(read.labels, torch.arange(4)) and torch.equal(read.take([1]), want[[1]])
    assert Dataset(samples=points).nbytes == 40 and Dataset(samples=points).storage_dtype == "float32"
    with pytest.raises(TypeError, match="exactly one"):
        Dataset(samples=every, source=TensorSource(every))


def test_built_in_image_datasets_are_held_as_uint8_once() -> None:
    from test_data_and_metrics import build

    digits = build("mnist-5k")
    assert digits.samples.dtype == torch.uint8 and digits.nbytes == 5000 * 28 * 28
    assert isinstance(PixelSource(), SampleSource)


# -- resident and streamed give the same batches --------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mirror", [False, True])
def test_resident_and_streamed_samplers_give_identical_batches(workers: int, mirror: bool) -> None:
    source = PixelSource()
    resident = BatchSampler(source.images, 8, seed=3, labels=source.labels, mirror=mirror)
    streamed = StreamingSampler(
        source, 8, seed=3, device=torch.device("cpu"), labels=source.labels, mirror=mirror, workers=workers
    )
    want = draws(resident, 15)  # 6 batches an epoch (12 mirrored): several epochs
    assert_same_batches(want, draws(streamed, 15))
    assert resident.epoch == streamed.epoch == (2 if mirror else 3)
    into = Batch(torch.empty(8, *SHAPE), torch.empty(8, dtype=torch.long))
    more = draws(resident, 4, out=into)
    assert_same_batches(more, draws(streamed, 4, out=into))
    fresh = BatchSampler(source.images, 8, 3, source.labels, mirror=mirror)
    assert_same_batches(more, draws(fresh, 19)[15:])  # drawing into buffers changes no batch
    streamed.close()


# -- exact resume ---------------------------------------------------------------------


def test_streamed_state_is_what_was_drawn_not_what_the_workers_read_ahead() -> None:
    source = PixelSource()
    streamed = StreamingSampler(source, 8, seed=1, device=torch.device("cpu"), workers=2, prefetch=4)
    draws(streamed, 4)  # mid-epoch 1; the workers have read up to 8 batches further
    state = streamed.state_dict()
    reference = BatchSampler(source.images, 8, seed=1)
    draws(reference, 4)
    assert_identical(reference.state_dict(), state, "batches")
    rest = draws(streamed, 9)
    resumed = StreamingSampler(source, 8, seed=999, device=torch.device("cpu"), workers=2)
    resumed.load_state_dict(state)
    assert_same_batches(rest, draws(resumed, 9))
    streamed.close()
    resumed.close()


def test_a_streamed_run_resumed_after_a_signal_matches_a_resident_run_never_stopped(tmp_path: Path) -> None:
    plugins = plugins_with(("pixels", Pixels()))
    reference = train(pixel_config(tmp_path / "reference", data_mode="resident"), plugins=plugins, quiet=True)
    stopped = tmp_path / "stopped"
    config = pixel_config(stopped, data_mode="streamed", data_workers=1)
    with pytest.raises(Interrupted):
        train(config, plugins=plugins_with(("pixels", Pixels()), ("stop", SignalAt(5))), quiet=True)
    resumed = train(None, resume=stopped, plugins=plugins, quiet=True)
    assert resumed.step == reference.step == 10
    want, got = ckpt.load_safe(reference.checkpoint), ckpt.load_safe(resumed.checkpoint)
    for key in ("generator", "discriminator", "opt_g", "opt_d", "batches", "rng"):
        assert_identical(want[key], got[key], key)


# -- sharding -------------------------------------------------------------------------


@pytest.mark.parametrize("ranks", [2, 4])
def test_streamed_ranks_partition_the_global_batch(ranks: int) -> None:
    source = PixelSource()
    whole = draws(StreamingSampler(source, 8, 5, torch.device("cpu"), labels=source.labels, workers=0), 9)
    shards = [
        draws(StreamingSampler(source, 8, 5, torch.device("cpu"), labels=source.labels, shard=(r, ranks), workers=0), 9)
        for r in range(ranks)
    ]
    for step, (samples, labels) in enumerate(whole):
        assert all(len(shard[step][0]) == 8 // ranks for shard in shards)
        assert torch.equal(torch.cat([shard[step][0] for shard in shards]), samples)
        assert torch.equal(torch.cat([shard[step][1] for shard in shards]), labels)


# -- --mirror -----------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
def test_mirror_flips_exactly_the_samples_of_the_doubled_order(streamed: bool) -> None:
    source = PixelSource()
    images = to_model_scale(source.images)
    if streamed:
        sampler = StreamingSampler(source, 10, 2, torch.device("cpu"), mirror=True, workers=0)
    else:
        sampler = BatchSampler(source.images, 10, 2, mirror=True)
    order = Order(2 * N, 10, 2)  # the same seed: the indices each batch is drawn at
    flipped = 0
    for samples, _ in draws(sampler, 10):  # one epoch: 100 of the 2N = 100 indices
        index = order.next()
        want = torch.stack([images[i - N].flip(-1) if i >= N else images[i] for i in index.tolist()])
        assert torch.equal(samples, want)
        flipped += int((index >= N).sum())
    assert flipped == N  # each image once as it is, once mirrored


def test_mirror_refuses_data_that_is_not_images() -> None:
    with pytest.raises(ConfigError, match=r"^--mirror flips images left-right; dataset 'ring-8' is .*not image$"):
        resolve(RunConfig(dataset="ring-8", generator="mlp", mirror=True), plugins_with().registry)


# -- the automatic choice ---------------------------------------------------------------


def test_auto_streams_what_does_not_fit_in_half_the_free_memory() -> None:
    read = Dataset(source=PixelSource())  # 2,400 bytes
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not residency.choose(read, cpu, free=4000).resident
    assert residency.choose(read, cpu, free=4800).resident
    held = Dataset(samples=pixels())
    assert residency.choose(held, cpu, free=0).resident  # already in memory
    assert not residency.choose(held, cuda, free=4000).resident and residency.choose(held, cuda, free=4800).resident
    assert residency.choose(read, cpu, "resident", free=0).resident
    assert not residency.choose(held, cpu, "streamed", workers=3).resident
    assert residency.choose(read, cpu, free=0, workers=3).describe() == "data: streamed (0.0 MB uint8), 3 workers"
    big = Dataset(source=PixelSource(1000, (3, 1000, 1000)))
    assert residency.choose(big, cpu, free=10**12).describe() == "data: resident (3.00 GB uint8)"


def test_a_run_streams_a_source_when_memory_is_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = plugins_with(("pixels", Pixels()))
    plan = resolve(pixel_config(tmp_path, data_workers=1), plugins.registry)
    monkeypatch.setattr(residency, "free_memory", lambda device: 1000)
    run = Run(plan, plugins, tmp_path)
    assert isinstance(run.engine.batches, StreamingSampler) and run.engine.batches.workers == 1
    assert run.residency.describe() == "data: streamed (0.0 MB uint8), 1 worker"
    monkeypatch.setattr(residency, "free_memory", lambda device: 10**9)
    assert isinstance(Run(plan, plugins, tmp_path).engine.batches, BatchSampler)


def test_a_cpu_run_keeps_held_samples_without_a_copy_and_reads_a_source_once_in_its_layout() -> None:
    """Resident memory is 1x the uint8 size: a channels-last run must not copy the dataset a second time."""
    from ganforge_core import residency

    cpu, last = torch.device("cpu"), torch.channels_last
    images = pixels(10, (3, 4, 4))
    assert residency.resident_samples(Dataset(samples=images), cpu, layout=last) is images
    source = PixelSource(n=10, shape=(3, 4, 4))
    read = residency.resident_samples(Dataset(source=source), cpu, layout=last)
    assert read.is_contiguous(memory_format=last) and not read.is_contiguous() and torch.equal(read, source.images)


# -- bad data -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["streamed", "resident"])
def test_a_read_that_fails_is_one_line_exit_2(tmp_path: Path, mode: str) -> None:
    plugins = plugins_with(("pixels", Pixels()))
    with pytest.raises(DataError) as raised:
        config = pixel_config(tmp_path / mode, dataset="pixels:bad=7", data_mode=mode, data_workers=1)
        train(config, plugins=plugins, quiet=True)
    assert str(raised.value) == "dataset 'pixels': cannot read image 7.png: truncated"
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_a_source_made_resident_is_read_whole_and_in_order_by_its_workers(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganforge_core import residency

    monkeypatch.setattr(residency, "READ_CHUNK", 7)  # 50 samples: 8 chunks, the last one short
    source = PixelSource()
    held = residency.resident_samples(Dataset(source=source), torch.device("cpu"), workers)
    assert held.dtype == torch.uint8 and torch.equal(held, source.images)
    with pytest.raises(DataError, match="cannot read image 44.png"):
        residency.resident_samples(Dataset(source=PixelSource(bad=44)), torch.device("cpu"), workers)
