"""Train-time contract checks: what each component hands the engine, on host metadata alone.

The engine calls these on every step it runs in Python (eager steps, and the one
step a CUDA graph is captured from; a replayed graph runs no Python). Each reads
only a tensor's shape and dtype, which live on the host, so no check waits for
the device. A breach raises :class:`~ganforge_core.errors.ContractError` naming
the plugin and the component, instead of a torch traceback from deep inside the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ganforge_core.errors import ContractError


class Owners:
    """Who provides each part of a step: ``"plugin 'p': loss 'name'"`` for errors.

    Keys: ``"generator"``, ``"discriminator"``, ``"loss"``, ``"scheduler"`` and ``"regularizer:NAME"``.
    A key with no entry (an engine built by hand) is named by the key itself.
    """

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self.labels = dict(labels or {})

    def __call__(self, key: str) -> str:
        return self.labels.get(key, key.replace(":", " '") + ("'" if ":" in key else ""))


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def scalar(value: Any, who: str, method: str, *, optional: bool = False, what: str | None = None) -> None:
    """A loss, penalty or statistic (``what`` names it): a 0-dim floating tensor (or None, for a penalty)."""
    if optional and value is None:
        return
    if isinstance(value, Tensor) and value.dim() == 0 and value.dtype.is_floating_point:
        return
    wanted = "None or a scalar (0-dim) floating tensor" if optional else "a scalar (0-dim) floating tensor"
    kind = what or ("a penalty" if optional else "a loss")
    raise ContractError(f"{who}: {method} returned {_described(value)}; {kind} returns {wanted}")


def beta2(value: Any, who: str) -> None:
    """A schedule's Adam beta2 (``Schedule.adam_beta2``): a number in [0, 1)."""
    if isinstance(value, float | int) and not isinstance(value, bool) and 0 <= value < 1:
        return
    raise ContractError(f"{who}: adam_beta2() returned {value!r}; Adam's beta2 is a number in [0, 1)")


def samples(value: Any, n: int, shape: tuple[int, ...], who: str) -> None:
    """G's output for ``n`` latents: a floating tensor ``[n, *shape]``."""
    wanted = [n, *shape]
    if isinstance(value, Tensor) and list(value.shape) == wanted and value.dtype.is_floating_point:
        return
    raise ContractError(
        f"{who}: G returned {_described(value)} for {n} latents; a generator returns floating samples "
        f"of shape {wanted} (the batch, then the dataset's sample shape)"
    )


def logits(value: Any, n: int, who: str) -> None:
    """D's output for ``n`` inputs: a floating tensor ``[n]``."""
    if isinstance(value, Tensor) and list(value.shape) == [n] and value.dtype.is_floating_point:
        return
    raise ContractError(
        f"{who}: D returned {_described(value)} for {n} inputs; a discriminator returns one floating "
        f"logit per input, shape [{n}]"
    )


def interval(value: Any, who: str, attribute: str) -> int:
    """A penalty interval (``d_penalty_every``/``g_penalty_every``): an int of at least 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ContractError(f"{who}: {attribute} is {value!r}; a penalty interval is an int of at least 1")


def grows(network: Any, who: str) -> None:
    """A network whose component declares the trait ``growing`` has ``grow(step, total_steps)``."""
    if not callable(getattr(network, "grow", None)):
        raise ContractError(
            f"{who} declares the trait 'growing' but has no grow(step, total_steps) method "
            "(ganforge_core.Growing)"
        )
