"""Data of any shape, end to end: a dataset of 7-bit vectors trains, samples, evaluates and exports.

The dataset comes from a plugin object defined here (``Plugins(extra=...)``), once
with a renderer of its own and once without; the networks are the built-in mlp.
Without a renderer the core draws its default for such data (per-dimension
histograms and the first samples written out), where it used to raise
``cannot draw samples of shape [2500, 7]`` after the whole run had trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import Field
from torch import Tensor
from typer.testing import CliRunner

from ganforge_core import Dataset, GanforgeError, Metric, Options, RunConfig, hookimpl, pictures, testing
from ganforge_core.cli import app
from ganforge_core.export import CONFIG, PROGRAM, export_generator, load_generator
from ganforge_core.plugins import Plugins
from ganforge_core.run import SAMPLE_CLOUD, Run, load_run
from ganforge_core.session import RunResult, train

BITS = 7
PNG = b"\x89PNG\r\n\x1a\n"


class BitsOptions(Options):
    n: int = Field(512, ge=16, description="vectors")


def bit_vectors(options: BitsOptions, ctx: Any) -> Dataset:
    source = torch.Generator().manual_seed(ctx.seed)
    samples = torch.randint(0, 2, (options.n, BITS), generator=source).float() * 2 - 1
    return Dataset(samples=samples, info={"bits": BITS})


class BitError(Metric):
    """How far generated coordinates lie from the nearest of -1 and 1."""

    def compute(self, generate: Callable[[int], Tensor], dataset: Dataset) -> dict[str, float]:
        return {"error": float((generate(200).abs() - 1).abs().mean())}


@dataclass
class BitRenderer:
    """A dataset's own picture: one pixel column per sample, white for +1; records its calls."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, samples: Tensor, path: Path, *, info: Mapping[str, Any], columns: int | None = None) -> None:
        self.calls.append({"shape": tuple(samples.shape), "columns": columns, "info": dict(info), "path": path})
        pixels = ((samples[:64].T > 0).to(torch.uint8) * 255).numpy()
        Image.fromarray(pixels).resize((64 * 4, BITS * 4), Image.NEAREST).save(path)


class Bits:
    """A plugin: the dataset ``bits`` (with ``render`` when given) and the metric ``bit-error``."""

    def __init__(self, render: Any = None) -> None:
        self.render = render

    @hookimpl
    def ganforge_register_datasets(self, register):
        register(
            "bits",
            bit_vectors,
            options=BitsOptions,
            summary="random 7-bit vectors in {-1, 1}",
            traits={"vector", "bits"},
            render=self.render,
        )

    @hookimpl
    def ganforge_register_metrics(self, register):
        register("bit-error", lambda options, ctx: BitError(), summary="distance to -1 or 1", requires={"bits"})


def bits_config(out: Path, **fields: Any) -> RunConfig:
    return RunConfig(
        generator="mlp:hidden=16,depth=1",
        discriminator="mlp:hidden=16,depth=1",
        dataset="bits",
        steps=4,
        batch_size=16,
        log_every=2,
        sample_every=2,
        checkpoint_every=0,
        device="cpu",
        out=out,
        **fields,
    )


@dataclass
class Trained:
    plugins: Plugins
    result: RunResult
    renderer: BitRenderer | None
    defaults: list[dict[str, Any]]  # what the default picture for such data was called with

    def load(self) -> Run:
        return load_run(self.result.run_dir, self.plugins, device="cpu")


def train_bits(root: Path, renderer: BitRenderer | None) -> Trained:
    plugins = Plugins(extra=[("bits", Bits(renderer))])
    defaults: list[dict[str, Any]] = []
    summary = pictures.summary

    def spy(samples: Tensor, path: Path, *, real: Tensor | None = None) -> None:
        defaults.append({"shape": tuple(samples.shape), "real": real, "path": path})
        summary(samples, path, real=real)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pictures, "summary", spy)
        result = train(bits_config(root / "run"), plugins=plugins, quiet=True)
    return Trained(plugins, result, renderer, defaults)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Trained with the dataset's own renderer."""
    return train_bits(tmp_path_factory.mktemp("own"), BitRenderer())


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Trained on the same dataset registered without a renderer."""
    return train_bits(tmp_path_factory.mktemp("default"), None)


def png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes().startswith(PNG), f"{path} is not a PNG"
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        return picture.size


def broken(samples: Tensor, path: Path, *, info: Mapping[str, Any], columns: int | None = None) -> None:
    raise IndexError("too many indices\nsecond line")


def test_the_bits_plugin_and_the_mlp_networks_meet_the_contract() -> None:
    renderer = BitRenderer()
    plugins = Plugins(extra=[("bits", Bits(renderer))])
    testing.check_component("dataset", "bits", plugins=plugins)
    assert [call["shape"] for call in renderer.calls] == [(64, BITS)], "the check draws the dataset's samples"
    for kind in ("generator", "discriminator"):
        testing.check_component(kind, "mlp", datasets=["bits"], plugins=plugins)
    testing.check_component("metric", "bit-error", plugins=plugins)
    with pytest.raises(AssertionError, match=r"^dataset 'bits': dataset 'bits' \(plugin 'bits'\): its renderer fail"):
        testing.check_component("dataset", "bits", plugins=Plugins(extra=[("bits", Bits(broken))]))


def test_a_run_on_bit_vectors_draws_them_with_the_default_picture(default: Trained) -> None:
    run_dir = default.result.run_dir
    assert default.result.step == 4 and default.result.samples == run_dir / "samples.png"
    drawn = [call["path"].name for call in default.defaults]
    assert drawn == ["samples-00000002.png", "samples-00000004.png", "samples.png"]
    dataset = default.load().dataset
    for call in default.defaults:
        assert call["shape"] == (SAMPLE_CLOUD, BITS), "the fixed latents of non-image data are a cloud"
        assert torch.equal(call["real"], dataset.samples), "all 512 real vectors are drawn beside the samples"
    width, height = png_size(run_dir / "samples.png")
    assert width == 900 and 600 < height < 1200, (width, height)
    assert (run_dir / "losses.png").read_bytes().startswith(PNG)
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"bit-error/error"} and 0 <= results["bit-error/error"] < 10


def test_a_dataset_with_its_own_renderer_draws_every_sample_picture(own: Trained) -> None:
    assert own.renderer is not None and not own.defaults
    calls = own.renderer.calls
    assert [call["path"].name for call in calls] == ["samples-00000002.png", "samples-00000004.png", "samples.png"]
    assert all(c["shape"] == (SAMPLE_CLOUD, BITS) and c["columns"] is None and c["info"] == {"bits": 7} for c in calls)
    assert png_size(own.result.run_dir / "samples.png") == (64 * 4, BITS * 4)


@pytest.mark.parametrize("which", ["own", "default"])
def test_sample_writes_pictures_and_raw_samples_of_any_shape(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    trained: Trained = request.getfixturevalue(which)
    run = trained.load()
    samples = run.draw(10, seed=3)
    assert samples.shape == (10, BITS)
    run.write_samples(samples, tmp_path / "s.pt")
    run.write_samples(samples, tmp_path / "s.npy")
    torch.testing.assert_close(torch.load(tmp_path / "s.pt"), samples)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), samples.numpy())

    before = len(trained.renderer.calls) if trained.renderer else len(trained.defaults)
    run.write_samples(samples, tmp_path / "s.png")
    walks = run.interpolate(3, 5, seed=3)
    assert walks.shape == (3, 5, BITS)
    run.write_samples(walks, tmp_path / "walk.png")
    if trained.renderer is not None:
        calls = trained.renderer.calls[before:]
        assert [(c["shape"], c["columns"]) for c in calls] == [((10, BITS), None), ((15, BITS), 5)]
        assert png_size(tmp_path / "s.png") == png_size(tmp_path / "walk.png") == (64 * 4, BITS * 4)
    else:
        assert png_size(tmp_path / "s.png")[0] == 900
        width, height = png_size(tmp_path / "walk.png")  # the heat-map of each path's values
        assert width == 700 and height >= 360


def test_eval_and_export_of_a_vector_generator(default: Trained, tmp_path: Path) -> None:
    run = default.load()
    assert run.evaluate() == default.result.results, "eval repeats the run's final evaluation"
    exported = export_generator(run, tmp_path / "export")
    config = json.loads((tmp_path / "export" / CONFIG).read_text())
    assert config["data_shape"] == [BITS] and config["output"]["shape"] == ["batch", BITS]
    assert config["output"]["value_range"] is None and exported.skipped == {}
    assert config["output"]["meaning"] == "samples [batch, 7] in the dataset's own coordinates (unbounded)"
    z = torch.randn(6, config["z_dim"])
    expected = run.generate(6, z)
    generator = load_generator(tmp_path / "export", plugins=default.plugins)
    torch.testing.assert_close(generator(z), expected)
    program = torch.export.load(str(tmp_path / "export" / PROGRAM)).module()
    torch.testing.assert_close(program(z), expected)


def test_the_commands_work_on_vector_data(
    default: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ganforge_core.plugins.get_plugins", lambda: default.plugins)
    run_dir = default.result.run_dir

    def ok(*args: str | Path) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "wrote 64 samples" in ok("sample", run_dir, "--out", tmp_path / "x.png", "--device", "cpu")
    assert png_size(tmp_path / "x.png")[0] == 900
    ok("sample", run_dir, "--interpolate", "4", "--n", "2", "--out", tmp_path / "w.png", "--device", "cpu")
    assert png_size(tmp_path / "w.png")[0] == 700
    assert "bit-error/error" in ok("eval", run_dir, "--device", "cpu")
    ok("export", run_dir, "--out", tmp_path / "export")
    assert json.loads((tmp_path / "export" / CONFIG).read_text())["data_shape"] == [BITS]


def test_a_failing_renderer_is_one_line_naming_its_plugin(default: Trained, tmp_path: Path) -> None:
    plugins = Plugins(extra=[("bits", Bits(broken))])
    run = load_run(default.result.run_dir, plugins, device="cpu")
    with pytest.raises(GanforgeError) as failed:
        run.write_samples(run.draw(4, seed=0), tmp_path / "x.png")
    assert str(failed.value) == (
        "dataset 'bits' (plugin 'bits'): its renderer failed on samples of shape [4, 7] (IndexError: too many indices)"
    )
    plugins = Plugins(extra=[("bits", Bits(lambda samples, path, **_: None))])
    run = load_run(default.result.run_dir, plugins, device="cpu")
    with pytest.raises(GanforgeError, match=r"^dataset 'bits' \(plugin 'bits'\): its renderer wrote nothing to "):
        run.write_samples(run.draw(4, seed=0), tmp_path / "y.png")
