"""The image and vector architectures: shapes at every size they support, resnet's size rule,
class-conditional G and D (label embedding, conditional BatchNorm, projection D), and
unconditional networks that stay exactly what saved checkpoints hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from ganforge_core import ConfigError, get_registry
from ganforge_core.cli import app
from support import build_context

REGISTRY = get_registry()
CLASSES = 10
TINY = {
    "dcgan": {"width": 4, "z_dim": 8},
    "mlp": {"hidden": 16, "depth": 1, "z_dim": 8},
    "resnet": {"width": 4, "z_dim": 8},
}
# (channels, batch size): grey, RGB and four channels; batches of two and more. Each
# size is checked with two of them, so every size and every pair is covered.
CHANNELS_AND_BATCH = [(1, 2), (3, 5), (4, 3)]


def shape_id(value: object) -> str:
    """``1x28x28`` for shapes, the value itself otherwise."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def sizes_with_channels(sizes: list[int]) -> list:
    cases = [(size, *CHANNELS_AND_BATCH[(i + j) % 3]) for i, size in enumerate(sizes) for j in range(2)]
    return [pytest.param(*case, id=f"{case[0]}px-{case[1]}ch") for case in cases]


def build(kind: str, name: str, shape: tuple[int, ...], classes: int = 0, d_input_shape=(), **options):
    """A network built the way a run builds it; conditional when ``classes`` > 0."""
    component = REGISTRY.get(kind, name)
    if kind == "discriminator":
        options = {k: v for k, v in options.items() if k != "z_dim"}
    ctx = build_context(shape, num_classes=classes, conditional=classes > 0, d_input_shape=d_input_shape)
    torch.manual_seed(0)
    return component.build(component.validate(options), ctx)


def assert_shapes(name: str, shape: tuple[int, ...], n: int, classes: int = 0, **options) -> None:
    generator = build("generator", name, shape, classes, **options)
    discriminator = build("discriminator", name, shape, classes, **options)
    labels = torch.randint(CLASSES, (n,)) if classes else None
    z = torch.randn(n, generator.z_dim)
    fake = generator(z) if labels is None else generator(z, labels)
    assert list(fake.shape) == [n, *shape]
    assert torch.isfinite(fake).all()
    if len(shape) == 3:  # images, in [-1, 1]
        assert fake.abs().max() <= 1
    logits = discriminator(fake) if labels is None else discriminator(fake, labels=labels)
    assert list(logits.shape) == [n] and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in generator.parameters())
    assert all(p.grad is not None for p in discriminator.parameters())


# -- shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "channels", "n"), sizes_with_channels([28, 30, 32, 48, 64]))
def test_dcgan_maps_every_square_size_and_channel_count(size: int, channels: int, n: int) -> None:
    assert_shapes("dcgan", (channels, size, size), n, **TINY["dcgan"])


@pytest.mark.parametrize(("size", "channels", "n"), sizes_with_channels([8, 32, 64, 128]))
def test_resnet_maps_every_side_of_four_times_a_power_of_two(size: int, channels: int, n: int) -> None:
    assert_shapes("resnet", (channels, size, size), n, **TINY["resnet"])


@pytest.mark.parametrize("shape", [(2,), (1, 28, 28), (3, 8, 8)], ids=shape_id)
def test_mlp_maps_vectors_and_images(shape: tuple[int, ...]) -> None:
    assert_shapes("mlp", shape, 4, **TINY["mlp"])


@pytest.mark.parametrize("name", ["dcgan", "mlp", "resnet"])
def test_discriminator_is_built_for_its_packed_input_shape(name: str) -> None:
    # Packing two samples doubles D's input channels; D must be built for that, not the data.
    shape, packed = (3, 16, 16), (6, 16, 16)
    discriminator = build("discriminator", name, shape, d_input_shape=packed, **TINY[name])
    assert list(discriminator(torch.randn(3, *packed)).shape) == [3]
    with pytest.raises(RuntimeError):
        discriminator(torch.randn(3, *shape))


# -- resnet's sizes ------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 30, 30), (3, 48, 48), (3, 4, 4), (3, 32, 16), (2,)], ids=shape_id)
@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_resnet_refuses_other_shapes_naming_the_supported_sides(kind: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError) as refused:
        build(kind, "resnet", shape, **TINY["resnet"])
    message = str(refused.value)
    assert "\n" not in message and str(list(shape)) in message
    assert all(side in message for side in ("8, 16, 32, 64", "4 * 2**k"))


def run_cli(*args: str | Path):
    return CliRunner().invoke(app, ["run", *map(str, args)])


def assert_one_error_line(result, *mentions: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(text in lines[0] for text in mentions), lines[0]


def test_resnet_on_28_pixel_mnist_is_one_error_line_through_the_cli(tmp_path: Path) -> None:
    result = run_cli("--gen", "resnet:width=4,z_dim=8", "--disc", "resnet:width=4", "--data", "mnist-5k",
                     "--steps", "1", "--batch-size", "4", "--out", tmp_path / "run")
    assert_one_error_line(result, "resnet", "[1, 28, 28]", "32, 64")
    assert not (tmp_path / "run" / "samples.png").exists()


# -- unconditional networks stay as saved checkpoints hold them ------------------------

# Parameter counts of the networks as they were before conditioning existed: a
# checkpoint saved then must still load into an unconditional network now.
UNCONDITIONAL_PARAMETERS = [
    ("generator", "dcgan", (1, 28, 28), 759681),
    ("generator", "dcgan", (3, 64, 64), 3576707),
    ("discriminator", "dcgan", (1, 28, 28), 138689),
    ("discriminator", "dcgan", (3, 64, 64), 2765633),
    ("generator", "mlp", (2,), 484802),
    ("generator", "mlp", (1, 28, 28), 798384),
    ("discriminator", "mlp", (2,), 405201),
    ("discriminator", "mlp", (1, 28, 28), 1187201),
    ("generator", "resnet", (3, 32, 32), 368771),
    ("generator", "resnet", (3, 64, 64), 447043),
    ("discriminator", "resnet", (3, 32, 32), 264769),
    ("discriminator", "resnet", (3, 64, 64), 342785),
]


@pytest.mark.parametrize(
    ("kind", "name", "shape", "count"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}-{shape_id(case[2])}") for case in UNCONDITIONAL_PARAMETERS],
)
def test_unconditional_networks_keep_their_parameters(kind: str, name: str, shape, count: int) -> None:
    network = build(kind, name, shape)
    assert sum(p.numel() for p in network.parameters()) == count
    if name != "resnet":
        assert all(key.startswith("net.") for key in network.state_dict()), list(network.state_dict())


# -- class-conditional networks --------------------------------------------------------

CONDITIONAL_SHAPES = [("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)), ("mlp", (2,)), ("mlp", (1, 28, 28)),
                      ("resnet", (1, 32, 32)), ("resnet", (3, 64, 64))]


@pytest.mark.parametrize(("name", "shape"), CONDITIONAL_SHAPES, ids=shape_id)
def test_conditional_networks_take_labels_and_keep_shapes(name: str, shape: tuple[int, ...]) -> None:
    assert_shapes(name, shape, 6, classes=CLASSES, **TINY[name])


@pytest.mark.parametrize("name", ["dcgan", "mlp", "resnet"])
@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_conditional_networks_have_more_parameters_and_refuse_missing_labels(kind: str, name: str) -> None:
    shape = (1, 16, 16)
    plain = build(kind, name, shape, **TINY[name])
    conditional = build(kind, name, shape, CLASSES, **TINY[name])
    count = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in conditional.parameters()) > count
    inputs = torch.randn(2, plain.z_dim) if kind == "generator" else torch.randn(2, *shape)
    with pytest.raises(ValueError, match="labels"):
        conditional(inputs)


@pytest.mark.parametrize("name", ["dcgan", "mlp", "resnet"])
def test_every_architecture_declares_label_conditioning_for_any_options(name: str) -> None:
    variants = {"dcgan": [{"norm": n} for n in ("batch", "layer", "none")], "mlp": [{"batchnorm": False}]}
    for kind in ("generator", "discriminator"):
        component = REGISTRY.get(kind, name)
        for options in [{}, *variants.get(name, [])]:
            if set(options) <= set(component.options.model_fields):
                assert "label-conditioning" in component.traits(component.validate(options)), (kind, options)


@pytest.mark.parametrize("name", ["dcgan", "mlp", "resnet"])
def test_a_conditional_network_needs_a_dataset_with_classes(name: str) -> None:
    component = REGISTRY.get("generator", name)
    ctx = build_context((1, 16, 16), num_classes=0, conditional=True)
    with pytest.raises(ConfigError, match="class"):
        component.build(component.validate(TINY[name]), ctx)


@pytest.mark.parametrize(("name", "shape"), [("dcgan", (1, 16, 16)), ("mlp", (2,)), ("resnet", (1, 16, 16))],
                         ids=shape_id)
@pytest.mark.parametrize("spectral_norm", [False, True], ids=["plain", "spectral-norm"])
def test_projection_discriminator_output_changes_with_the_labels_alone(name, shape, spectral_norm) -> None:
    discriminator = build("discriminator", name, shape, CLASSES, **TINY[name])
    if spectral_norm:
        regularizer = REGISTRY.get("regularizer", "spectral-norm")
        discriminator = regularizer.build(regularizer.validate({}), build_context(shape)).wrap_discriminator(
            discriminator
        )
        # The class embedding is normalised too, as in the projection discriminator paper.
        assert parametrize.is_parametrized(discriminator.projection.embed)
    discriminator.eval()  # spectral norm's power iteration stays put between the two calls
    x = torch.randn(8, *shape)
    labels = torch.arange(8) % CLASSES
    relabelled = torch.where(torch.arange(8) < 4, (labels + 1) % CLASSES, labels)
    with torch.no_grad():
        before, after = discriminator(x, labels=labels), discriminator(x, labels=relabelled)
    changed = (before - after).abs() > 1e-4
    assert changed[:4].all() and not changed[4:].any(), (before, after)


@pytest.mark.parametrize("name", ["dcgan", "mlp", "resnet"])
def test_conditional_generator_gives_each_label_its_own_sample_for_one_latent(name: str) -> None:
    shape = (2,) if name == "mlp" else (1, 16, 16)
    generator = build("generator", name, shape, CLASSES, **TINY[name]).eval()
    z = torch.randn(1, generator.z_dim).repeat(CLASSES, 1)
    with torch.no_grad():
        samples = generator(z, torch.arange(CLASSES)).flatten(1)
        again = generator(z, torch.arange(CLASSES)).flatten(1)
    distances = torch.cdist(samples.double(), samples.double())
    off_diagonal = distances[~torch.eye(CLASSES, dtype=torch.bool)]
    # Relative to the samples' size (a fresh dcgan's eval-mode outputs are ~1e-4 under its N(0, 0.02)
    # init): far above float noise (~1e-6 of it), far below real gaps.
    scale = samples.double().norm(dim=1).mean()
    assert (off_diagonal > 1e-3 * scale).all(), (distances, scale)
    torch.testing.assert_close(samples, again)


# -- end to end ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generator", "discriminator", "data"),
    [
        ("dcgan:width=4", "dcgan:width=4", "mnist-5k"),
        ("mlp:hidden=16,depth=1,z_dim=8", "mlp:hidden=16,depth=1", "mnist-5k"),
        ("resnet:width=4,z_dim=8", "resnet:width=4", "mnist-5k:size=32"),
    ],
    ids=["dcgan", "mlp", "resnet"],
)
def test_conditional_run_trains_and_writes_samples(generator, discriminator, data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("--conditional", "--data", data, "--gen", generator, "--disc", discriminator,
                     "--steps", "3", "--batch-size", "16", "--metric", "none", "--out", out, "-q")
    assert result.exit_code == 0, result.output[-3000:]
    assert (out / "samples.png").stat().st_size > 0
    assert '"conditional": true' in (out / "config.json").read_text()


def test_conditional_run_on_unlabelled_data_is_one_error_line(tmp_path: Path) -> None:
    result = run_cli("--conditional", "--data", "ring-8", "--gen", "mlp:hidden=8,depth=1",
                     "--disc", "mlp:hidden=8,depth=1", "--steps", "1", "--out", tmp_path / "run")
    assert_one_error_line(result, "--conditional", "labelled", "ring-8")
