"""The fields of a loaded checkpoint, checked: each refusal names the file and the field.

:func:`~ganforge_core.checkpoint.load_safe` calls :func:`check` on every checkpoint it
reads, so ``sample``, ``eval``, ``export`` and ``run --resume`` refuse a tampered or
damaged field (an RNG state of the wrong size or dtype, an empty RNG dict, ``step``
as a string) in one line, before anything is built from it. The checks are of form
alone: whether the tensors fit the networks the configuration builds is for the
loaders to say (:func:`~ganforge_core.trained.misfit`). A random-number state is
checked by handing it to a scratch generator of its kind, which is the one judge of
what that generator accepts (size, dtype and contents).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge_core.errors import CheckpointError


class _Bad(Exception):
    """A field's problem: raised by the checks below, turned into one CheckpointError."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def check(state: dict[str, Any], path: Path) -> None:
    """Refuse ``state`` (a ganforge checkpoint with every required key) if a field is malformed."""
    try:
        _check(state)
    except _Bad as bad:
        raise CheckpointError(f"{path} has a malformed field '{bad.field}': {bad.problem}") from None


def _check(state: dict[str, Any]) -> None:
    _count(state["step"], "step")
    _config(state["config"])
    for name in ("generator", "discriminator"):
        _tensors(state[name], name)
    for name in ("opt_g", "opt_d"):
        _optimizer(state[name], name)
    regularizers = _mapping(state["regularizers"], "regularizers")
    for name, value in regularizers.items():
        _mapping(value, f"regularizers.{name}")
    _batches(_mapping(state["batches"], "batches"))
    if "skipped" in state:
        for phase, count in _mapping(state["skipped"], "skipped").items():
            _count(count, f"skipped.{phase}")
    if "data" in state:
        _data(_mapping(state["data"], "data"))
    rng = _mapping(state["rng"], "rng")
    _random_states(rng, "rng")
    if "ranks" in rng:
        ranks = rng["ranks"]
        if type(ranks) is not list or not ranks:
            raise _Bad("rng.ranks", f"{_shown(ranks)} is not a list of each rank's random states")
        for rank, own in enumerate(ranks):
            _random_states(_mapping(own, f"rng.ranks.{rank}"), f"rng.ranks.{rank}")
    if rng.get("latents") is not None:
        _bytes(rng["latents"], "rng.latents")


def _shown(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _count(value: Any, field: str) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(field, f"{_shown(value)} is not a count (an int of at least 0)")
    return value


def _mapping(value: Any, field: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _Bad(field, f"{_shown(value)} is not a dict")
    return value


def _tensors(value: Any, field: str) -> None:
    for key, item in _mapping(value, field).items():
        if type(key) is not str or not isinstance(item, Tensor):
            raise _Bad(f"{field}.{key}", f"{_shown(item)} is not a tensor of a state_dict")


def _config(text: Any) -> None:
    from pydantic import ValidationError

    from ganforge_core.config import RunConfig

    if type(text) is not str:
        raise _Bad("config", f"{_shown(text)} is not a run configuration's JSON text")
    try:
        RunConfig.model_validate(json.loads(text))
    except (ValueError, RecursionError) as exc:  # a ValidationError is a ValueError
        problem = _first_validation_error(exc) if isinstance(exc, ValidationError) else "it is not JSON"
        raise _Bad("config", f"not a valid run configuration ({problem})") from None


def _first_validation_error(exc: Any) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the whole"
    return f"{where}: {error['msg']}"


def _optimizer(value: Any, field: str) -> None:
    state = _mapping(_mapping(value, field).get("state"), f"{field}.state")
    for key, entry in state.items():
        for name, item in _mapping(entry, f"{field}.state.{key}").items():
            if not isinstance(item, Tensor | int | float):
                raise _Bad(f"{field}.state.{key}.{name}", f"{_shown(item)} is neither a tensor nor a number")
    groups = value.get("param_groups")
    if type(groups) is not list:
        raise _Bad(f"{field}.param_groups", f"{_shown(groups)} is not a list")
    for index, group in enumerate(groups):
        params = _mapping(group, f"{field}.param_groups.{index}").get("params")
        if type(params) is not list or not all(type(p) is int for p in params):
            raise _Bad(f"{field}.param_groups.{index}.params", f"{_shown(params)} is not a list of ints")
        for name, setting in group.items():
            if name != "params" and not _setting(setting):
                raise _Bad(f"{field}.param_groups.{index}.{name}", f"{_shown(setting)} is not an optimizer setting")


def _setting(value: Any) -> bool:
    """A hyperparameter of an optimizer's group: a number, a flag, None, a 0-dim tensor or a pair (betas)."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, Tensor):
        return value.dim() == 0
    return type(value) in (list, tuple) and all(type(item) in (int, float) for item in value)


def _batches(batches: dict[Any, Any]) -> None:
    _generator_state(batches.get("generator"), "batches.generator")
    order = batches.get("order")
    if order is not None and not (isinstance(order, Tensor) and order.dtype == torch.int64 and order.dim() == 1):
        raise _Bad("batches.order", f"{_shown(order)} is not None or a 1-D int64 permutation")
    _count(batches.get("position"), "batches.position")
    _count(batches.get("epoch"), "batches.epoch")


def _data(data: dict[Any, Any]) -> None:
    shape = data.get("shape")
    if type(shape) is not list or not shape or not all(type(s) is int and s >= 1 for s in shape):
        raise _Bad("data.shape", f"{_shown(shape)} is not a list of sizes of at least 1")
    _count(data.get("num_classes"), "data.num_classes")
    if data.get("info") is not None:
        _mapping(data["info"], "data.info")


def _random_states(rng: dict[Any, Any], field: str) -> None:
    """Python's, NumPy's, torch's and CUDA's states, as :meth:`Run.state_dict` records them."""
    missing = [name for name in ("python", "numpy", "torch", "cuda") if name not in rng]
    if missing:
        raise _Bad(field, f"it lacks the {', '.join(missing)} random state{'s' if len(missing) > 1 else ''}")
    python = rng["python"]
    try:
        version, internal, gauss = python
        random.Random().setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Bad(f"{field}.python", f"{_shown(python)} is no state of Python's random ({exc})") from None
    numpy = rng["numpy"]
    try:
        name, keys, position, has_gauss, cached = numpy
        if not (isinstance(keys, Tensor) and keys.dtype == torch.int64 and keys.dim() == 1):
            raise TypeError(f"its keys are {_shown(keys)}, not a 1-D int64 tensor")
        np.random.RandomState().set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise _Bad(f"{field}.numpy", f"{_shown(numpy)} is no state of NumPy's random ({exc})") from None
    _generator_state(rng["torch"], f"{field}.torch")
    cuda = rng["cuda"]
    if type(cuda) is not list:
        raise _Bad(f"{field}.cuda", f"{_shown(cuda)} is not a list of CUDA generator states")
    for index, item in enumerate(cuda):
        _bytes(item, f"{field}.cuda.{index}")


def _generator_state(value: Any, field: str) -> None:
    """A CPU ``torch.Generator``'s state: the generator itself says whether it takes it."""
    _bytes(value, field)
    try:
        torch.Generator().set_state(value)
    except RuntimeError as exc:
        raise _Bad(field, f"not a CPU generator state ({str(exc).strip().splitlines()[0]})") from None


def _bytes(value: Any, field: str) -> None:
    if not (isinstance(value, Tensor) and value.dtype == torch.uint8 and value.dim() == 1 and value.numel()):
        raise _Bad(field, f"{_shown(value)} is not a generator state (a 1-D uint8 tensor)")
