"""The small objects every check builds (options, contexts, tiny networks), and how a check fails."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge_core.components import BuildContext
from ganforge_core.errors import ConfigError
from ganforge_core.registry import Component

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins

# Option values that keep networks, datasets and metrics tiny, keyed by option name.
# ``size=16`` keeps DCGAN's normalised inner layer (16 -> 8 -> 4) while staying small.
SMALL_VALUES: Mapping[str, Any] = {
    "hidden": 8,
    "depth": 1,
    "width": 4,
    "z_dim": 4,
    "pieces": 2,
    "n": 256,
    "size": 16,
    "samples": 256,
}

MODALITIES = ("vector", "image")
# A network that declares one of these never trains on a batch of one: ganforge
# refuses --batch-size 1 (and gradient penalties on a BatchNorm critic) for it.
BATCHNORM_TRAIT = {"generator": "batchnorm-in-g", "discriminator": "batchnorm-in-d"}


def _fail(message: str) -> AssertionError:
    return AssertionError(message)


def _check(condition: object, message: str | Callable[[], str]) -> None:
    # An explicit raise, not ``assert``: it must hold under ``python -O`` and outside pytest.
    if not condition:
        raise _fail(message() if callable(message) else message)


@contextmanager
def _about(what: str) -> Iterator[None]:
    """Prefix the message of an AssertionError raised inside with ``what``."""
    try:
        yield
    except AssertionError as exc:
        raise _fail(f"{what}: {exc}") from None


# -- building blocks -------------------------------------------------------------


def small_options(component: Component, values: Mapping[str, Any] = SMALL_VALUES, **extra: Any) -> dict[str, Any]:
    """The entries of ``values`` (plus ``extra``) that ``component`` has as options and accepts."""
    fields = component.options.model_fields
    wanted = {k: v for k, v in {**values, **extra}.items() if k in fields}
    try:
        component.validate(wanted)
        return wanted
    except ConfigError:
        pass
    accepted: dict[str, Any] = {}
    for key, value in wanted.items():
        try:
            component.validate({**accepted, key: value})
        except ConfigError:
            continue
        accepted[key] = value
    return accepted


def default_traits(component: Component) -> frozenset[str]:
    """The component's traits with its default options."""
    return component.traits(component.validate({}))


def build_context(data_shape: tuple[int, ...] = (), **fields: Any) -> BuildContext:
    """A CPU :class:`BuildContext` for ``data_shape``; ``fields`` override any of its fields."""
    values: dict[str, Any] = {
        "data_shape": data_shape,
        "d_input_shape": data_shape,
        "num_classes": 0,
        "total_steps": 10,
        "batch_size": 8,
        "device": torch.device("cpu"),
        "seed": 0,
    }
    values.update(fields)
    return BuildContext(**values)


def _plugins(plugins: Plugins | None) -> Plugins:
    """``plugins``, else the installed ones (the ``ganforge`` entry points)."""
    if plugins is not None:
        return plugins
    from ganforge_core.plugins import get_plugins

    return get_plugins()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyCritic(nn.Module):
    """A two-layer critic on flattened inputs: what :func:`check_loss` trains against.

    Smooth (SiLU), so its input gradient changes with every input and has a gradient
    in its parameters everywhere: the penalty checks read both.
    """

    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.SiLU(), nn.Linear(8, 1))

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.net(x)
        return logits.flatten()


class TinyGenerator(nn.Module):
    """A one-layer generator of ``shape`` with a tanh output (so images stay in [-1, 1])."""

    def __init__(self, shape: tuple[int, ...], z_dim: int = 3) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(z_dim, math.prod(shape)), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        samples: Tensor = self.net(z)
        return samples.reshape(-1, *self.shape)


def _finite(tensor: Tensor) -> bool:
    return bool(torch.isfinite(tensor).all())
