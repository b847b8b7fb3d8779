"""A trained generator, exported for use without ganforge (``ganforge export``).

:func:`export_generator` writes into one directory:

* ``generator.safetensors``: G's weights (the EMA copy if the run keeps one, unless
  ``ema=False``), with spectral normalisation folded into plain weights. Safetensors
  holds tensors and nothing else, so reading it runs no code (unlike a pickle).
* ``generator.json``: what is needed to use them: the component and its options,
  the data shape, ``z_dim``, the classes, the value range, how to draw z, the
  ganforge and torch versions, and which of the programs below were written.
* ``generator.pt2``: a ``torch.export`` program (``torch.export.load(p).module()``).
* ``generator.torchscript.pt``: a traced TorchScript module (``torch.jit.load(p)``).

Both programs take ``z`` ([batch, z_dim], float32) and, for a class-conditional
generator, ``labels`` ([batch], int64), for any batch size, and need only torch.
Each is checked against the generator on a batch of another size before it is
kept; one that cannot be made, or does not agree, is left out with the reason in
the command's output and in ``generator.json`` (``"skipped"``), not a traceback.

:func:`load_generator` rebuilds the generator from the safetensors and JSON files
with the installed plugins (the one path that needs ganforge).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core.components import BuildContext
from ganforge_core.errors import CheckpointError, ConfigError
from ganforge_core.version import __version__

if TYPE_CHECKING:
    from ganforge_core.plugins import Plugins
    from ganforge_core.trained import Trained

FORMAT = "ganforge-generator"
FORMAT_VERSION = 1
WEIGHTS = "generator.safetensors"
CONFIG = "generator.json"
PROGRAM = "generator.pt2"
SCRIPT = "generator.torchscript.pt"
PROGRAMS = {"torch.export": PROGRAM, "torchscript": SCRIPT}
TRACE_BATCH, CHECK_BATCH = 2, 3  # a program made at one batch size must work at another
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@dataclass
class Exported:
    """What :func:`export_generator` wrote."""

    directory: Path
    config: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def standalone_generator(trained: Trained, ema: bool = True) -> tuple[nn.Module, bool]:
    """A CPU, float32, eval-mode copy of the sampling generator (of a :class:`Trained`, or a
    :class:`~ganforge_core.run.Run`) with parametrizations (spectral norm) folded into plain
    weights, and whether it is the EMA copy."""
    from torch.nn.utils import parametrize

    sampler = trained.sampler(ema)
    module = copy.deepcopy(sampler).cpu().float().eval().requires_grad_(False)
    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations):  # type: ignore[union-attr]
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module.requires_grad_(False), sampler is not trained.generator


def example_inputs(z_dim: int, num_classes: int, batch: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Latents (and labels, for a conditional generator) such as the programs take."""
    source = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, z_dim, generator=source)
    if not num_classes:
        return (z,)
    return z, torch.randint(num_classes, (batch,), generator=source)


def export_generator(trained: Trained, out: Path, ema: bool = True) -> Exported:
    """Write the trained generator into ``out`` (see the module docstring)."""
    from safetensors.torch import save

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (WEIGHTS, CONFIG, PROGRAM, SCRIPT):
        (out / stale).unlink(missing_ok=True)
    generator, used_ema = standalone_generator(trained, ema)
    config = describe(trained, used_ema)
    num_classes = config["num_classes"]
    exported = Exported(out, config)

    state = {k: v.detach().contiguous().clone() for k, v in generator.state_dict().items()}
    # Serialised here, written by Python: a full disk is an OSError naming the file (safetensors'
    # own writer raises a SafetensorError), and the file is complete or absent.
    weights = save(state, metadata={"format": FORMAT, "ganforge_version": __version__})
    _write(out / WEIGHTS, weights)
    exported.written.append(out / WEIGHTS)

    trace_inputs = example_inputs(trained.z_dim, num_classes, TRACE_BATCH)
    check_inputs = example_inputs(trained.z_dim, num_classes, CHECK_BATCH, seed=1)
    with torch.no_grad():
        expected = generator(*check_inputs)
    makers: dict[str, Callable[[], tuple[bytes, Callable[..., Tensor]]]] = {
        "torch.export": lambda: _torch_export(generator, trace_inputs),
        "torchscript": lambda: _torchscript(generator, trace_inputs),
    }
    for kind, make in makers.items():
        path = out / PROGRAMS[kind]
        try:
            data, program = make()
        except Exception as exc:  # noqa: BLE001 - any failure means "this architecture cannot be exported this way"
            exported.skipped[kind] = f"{MAKERS[kind]} failed ({_first_line(exc)})"
        else:
            exported.skipped.update(_check(kind, program, check_inputs, expected))
        if kind not in exported.skipped:
            _write(path, data)
            exported.written.append(path)
    config["files"] = {
        "weights": WEIGHTS,
        "config": CONFIG,
        **{kind: (PROGRAMS[kind] if kind not in exported.skipped else None) for kind in PROGRAMS},
    }
    config["skipped"] = exported.skipped
    text = (json.dumps(config, indent=2) + "\n").encode("utf-8")
    _write(out / CONFIG, text)  # last: a directory without it is no export
    exported.written.insert(1, out / CONFIG)
    return exported


def _write(path: Path, data: bytes) -> None:
    """``data`` as ``path``, complete or not at all; a full disk is an OSError naming ``path``."""
    ckpt.write_atomic(path, lambda handle: handle.write(data))


MAKERS = {"torch.export": "torch.export.export with a free batch size", "torchscript": "torch.jit.trace"}


def _check(kind: str, program: Callable[..., Tensor], inputs: tuple[Tensor, ...], expected: Tensor) -> dict[str, str]:
    """{kind: reason} if the program, made at batch size TRACE_BATCH, is wrong at CHECK_BATCH."""
    try:
        with torch.no_grad():
            got = program(*inputs)
    except Exception as exc:  # noqa: BLE001
        return {kind: f"the program made at batch size {TRACE_BATCH} fails at {CHECK_BATCH} ({_first_line(exc)})"}
    if not (isinstance(got, Tensor) and got.shape == expected.shape and torch.allclose(got, expected, **TOLERANCE)):
        return {kind: f"the program's output differs from the generator's at batch size {CHECK_BATCH}"}
    return {}


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _torch_export(generator: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[bytes, Callable[..., Tensor]]:
    """The program's file contents, and the program loaded back from them."""
    from torch.export import Dim, export

    batch = Dim("batch", min=1)
    program = export(generator, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue(), torch.export.load(io.BytesIO(buffer.getvalue())).module()


def _torchscript(generator: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[bytes, Callable[..., Tensor]]:
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export; the file still serves older
        # PyTorch and C++ (libtorch). Tracing's warnings are answered by the check below.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(generator, inputs, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        return buffer.getvalue(), torch.jit.load(io.BytesIO(buffer.getvalue()))


def describe(trained: Trained, used_ema: bool) -> dict[str, Any]:
    """``generator.json`` without its ``files`` and ``skipped`` entries."""
    plan, config, z_dim = trained.plan, trained.plan.config, trained.z_dim
    shape = list(trained.data_shape)
    image = len(shape) == 3
    num_classes = trained.num_classes if config.conditional else 0
    value_range = [-1.0, 1.0] if image else None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ganforge_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "generator": {
            "name": plan.generator.component.name,
            "plugin": plan.generator.component.plugin,
            "options": plan.generator.options.model_dump(mode="json"),
        },
        "ema": used_ema,
        "step": trained.step,
        "dataset": config.dataset.name,
        "data_shape": shape,
        "z_dim": z_dim,
        "conditional": bool(config.conditional),
        "num_classes": num_classes,
        "latent": {
            "distribution": "standard normal",
            "shape": ["batch", z_dim],
            "dtype": "float32",
            "python": f"z = torch.randn(batch, {z_dim})",
        },
        "labels": (
            {"shape": ["batch"], "dtype": "int64", "range": [0, num_classes], "python": "labels = torch.tensor([...])"}
            if num_classes
            else None
        ),
        "output": {
            "shape": ["batch", *shape],
            "dtype": "float32",
            "value_range": value_range,
            "meaning": (
                "images [batch, channels, height, width] in [-1, 1]; (x + 1) / 2 gives [0, 1]"
                if image
                else f"samples [batch, {', '.join(map(str, shape))}] in the dataset's own coordinates (unbounded)"
            ),
        },
        "call": "generator(z, labels)" if num_classes else "generator(z)",
        "run_config": json.loads(config.model_dump_json()),
    }


def read_config(directory: Path) -> dict[str, Any]:
    """``generator.json`` of an export, checked. Raises a one-line :class:`CheckpointError`."""
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG} in {directory}: not a ganforge export")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} does not describe a ganforge generator export")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has export format {config.get('format_version')}; this ganforge reads {FORMAT_VERSION}"
        )
    return config


def load_generator(
    directory: Path | str, device: str | torch.device = "cpu", plugins: Plugins | None = None
) -> nn.Module:
    """The exported generator, rebuilt by its plugin and loaded from ``generator.safetensors``.

    Returns the module in eval mode, without gradients. Call it as
    ``generator(z)`` (or ``generator(z, labels)`` when ``generator.json`` has
    ``"conditional": true``) with ``z = torch.randn(n, z_dim)``.
    """
    from safetensors.torch import load_file

    from ganforge_core.plugins import get_plugins

    directory = Path(directory)
    config = read_config(directory)
    try:
        name, options = config["generator"]["name"], config["generator"]["options"]
        shape, num_classes = tuple(int(s) for s in config["data_shape"]), int(config["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{directory / CONFIG} lacks the generator's name, options or data shape") from None
    component = (plugins or get_plugins()).registry.get("generator", name)
    ctx = BuildContext(
        data_shape=shape,
        num_classes=num_classes,
        total_steps=1,
        batch_size=1,
        device=torch.device(device),
        seed=0,
        conditional=num_classes > 0,
    )
    generator = component.build(component.validate(options), ctx)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS} in {directory}")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type is not importable everywhere
        raise CheckpointError(f"{weights} is truncated or corrupt ({_first_line(exc)})") from None
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{weights} does not fit generator '{name}': {' '.join(lines[:2])}") from None
    return generator.to(device).eval().requires_grad_(False)
