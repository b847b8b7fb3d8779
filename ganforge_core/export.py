"""A trained generator, exported for use without ganforge (``ganforge export``).

:func:`export_generator` writes into one directory, in the layout the Hugging Face
Hub expects of a PyTorch model (so ``hf upload`` can publish it as it is):

* ``model.safetensors``: G's weights (the EMA copy if the run keeps one, unless
  ``ema=False``), with spectral normalisation folded into plain weights, under the
  generator's own state-dict keys. Safetensors holds tensors and nothing else, so
  reading it runs no code (unlike a pickle).
* ``config.json``: what is needed to use them: the component and its options,
  the data shape, ``z_dim``, the classes, the value range, how to draw z, the
  ganforge and torch versions, and which of the programs below were written.
  Its keys are what :class:`ganforge_core.hub.HubGenerator` is built from.
* programs that need no ganforge, chosen by ``formats`` (``--format``):
  ``torch`` (the default) writes ``generator.pt2``, a ``torch.export`` program
  (``torch.export.load(p).module()``), and ``generator.torchscript.pt``, a traced
  TorchScript module (``torch.jit.load(p)``); ``onnx`` writes ``generator.onnx``
  (:mod:`ganforge_core.onnx_export`).

Every program takes ``z`` ([batch, z_dim], float32) and, for a class-conditional
generator, ``labels`` ([batch], int64), for any batch size. Each is checked against
the generator on a batch of another size before it is kept. Without ``formats``,
one that cannot be made, or does not agree, is left out with the reason in the
command's output and in ``config.json`` (``"skipped"``), not a traceback; a format
asked for by name must be made, or the export is refused with one line and
nothing is written.

:func:`load_generator` rebuilds the generator from ``config.json`` and
``model.safetensors`` with the installed plugins; so does ``HubGenerator``, through
huggingface_hub. Exports of format 1 (``generator.json`` and
``generator.safetensors``, the same contents) still load.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganforge_core import checkpoint as ckpt
from ganforge_core.components import BuildContext
from ganforge_core.errors import CheckpointError, ConfigError, one_of
from ganforge_core.version import __version__

if TYPE_CHECKING:
    from torch.export import ExportedProgram

    from ganforge_core.plugins import Plugins
    from ganforge_core.trained import Trained

FORMAT = "ganforge-generator"
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"  # huggingface_hub's SAFETENSORS_SINGLE_FILE
CONFIG = "config.json"  # huggingface_hub's CONFIG_NAME
LAYOUTS = {FORMAT_VERSION: (CONFIG, WEIGHTS), 1: ("generator.json", "generator.safetensors")}
PROGRAM = "generator.pt2"
SCRIPT = "generator.torchscript.pt"
ONNX = "generator.onnx"
PROGRAMS = {"torch.export": PROGRAM, "torchscript": SCRIPT, "onnx": ONNX}
FORMATS = {"torch": ("torch.export", "torchscript"), "onnx": ("onnx",)}
MAKERS = {
    "torch.export": "torch.export.export with a free batch size",
    "torchscript": "torch.jit.trace",
    "onnx": "torch.onnx.export",
}
TRACE_BATCH, CHECK_BATCH = 2, 3  # a program made at one batch size must work at another
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@dataclass
class Exported:
    """What :func:`export_generator` wrote."""

    directory: Path
    config: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    """A step of making a program failed; the message is the reason, already shortened."""


def standalone_generator(trained: Trained, ema: bool = True) -> tuple[nn.Module, bool]:
    """A CPU, float32, eval-mode copy of the sampling generator (of a :class:`Trained`, or a
    :class:`~ganforge_core.run.Run`) with parametrizations (spectral norm) folded into plain
    weights, and whether it is the EMA copy."""
    from torch.nn.utils import parametrize

    sampler = trained.sampler(ema)
    module = copy.deepcopy(sampler).cpu().float().eval().requires_grad_(False)
    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            chains: nn.ModuleDict = sub.parametrizations  # type: ignore[assignment]  # set by parametrize
            for name in list(chains):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module.requires_grad_(False), sampler is not trained.generator


def example_inputs(z_dim: int, num_classes: int, batch: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Latents (and labels, for a conditional generator) such as the programs take."""
    source = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, z_dim, generator=source)
    if not num_classes:
        return (z,)
    return z, torch.randint(num_classes, (batch,), generator=source)


def program_kinds(formats: Sequence[str] | None) -> list[str]:
    """The programs ``formats`` asks for (``None``: the torch ones), or a one-line ConfigError."""
    kinds: list[str] = []
    for name in formats if formats is not None else ["torch"]:
        if name not in FORMATS:
            raise ConfigError(f"--format {name!r} is not a format; choose from {one_of(FORMATS)}")
        kinds += [kind for kind in FORMATS[name] if kind not in kinds]
    return kinds


def save_weights(generator: nn.Module, path: Path) -> None:
    """The generator's state as safetensors, under its own keys, written atomically.

    Serialised here and written by Python: a full disk is an OSError naming the file
    (safetensors' own writer raises a SafetensorError), and the file is complete or absent.
    """
    from safetensors.torch import save

    state = {k: v.detach().contiguous().clone() for k, v in generator.state_dict().items()}
    _write(path, save(state, metadata={"format": FORMAT, "ganforge_version": __version__}))


def export_generator(
    trained: Trained, out: Path, ema: bool = True, formats: Sequence[str] | None = None
) -> Exported:
    """Write the trained generator into ``out`` (see the module docstring)."""
    kinds = program_kinds(formats)
    if "onnx" in kinds:
        from ganforge_core.onnx_export import require_onnx

        require_onnx()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for stale in {name for layout in LAYOUTS.values() for name in layout} | set(PROGRAMS.values()):
        (out / stale).unlink(missing_ok=True)
    generator, used_ema = standalone_generator(trained, ema)
    config = describe(trained, used_ema)
    exported = Exported(out, config)
    programs = _make_programs(generator, config, kinds, out, exported.skipped)
    if formats is not None and exported.skipped:
        for path in programs:
            path.unlink(missing_ok=True)
        if created:
            out.rmdir()
        kind, reason = next(iter(exported.skipped.items()))
        raise ConfigError(f"generator '{config['generator']['name']}' cannot be exported as {kind}: {reason}")
    save_weights(generator, out / WEIGHTS)
    config["files"] = {
        "weights": WEIGHTS,
        "config": CONFIG,
        **{kind: (PROGRAMS[kind] if out / PROGRAMS[kind] in programs else None) for kind in PROGRAMS},
    }
    config["skipped"] = exported.skipped
    _write(out / CONFIG, (json.dumps(config, indent=2) + "\n").encode("utf-8"))  # last: a directory without it is no export
    exported.written = [out / WEIGHTS, out / CONFIG, *programs]
    return exported


def _make_programs(
    generator: nn.Module, config: dict[str, Any], kinds: list[str], out: Path, skipped: dict[str, str]
) -> list[Path]:
    """Make and check each kind of program into ``out``; the paths kept, reasons in ``skipped``."""
    trace_inputs = example_inputs(config["z_dim"], config["num_classes"], TRACE_BATCH)
    check_inputs = example_inputs(config["z_dim"], config["num_classes"], CHECK_BATCH, seed=1)
    with torch.no_grad():
        expected = generator(*check_inputs)
    made: dict[str, ExportedProgram | _Refused] = {}

    def exported_program() -> ExportedProgram:
        """torch.export's program, made once for both the .pt2 file and the ONNX one."""
        if not made:
            try:
                made["program"] = _export_program(generator, trace_inputs)
            except Exception as exc:  # noqa: BLE001 - any failure means "cannot be exported this way"
                made["program"] = _Refused(f"{MAKERS['torch.export']} failed ({_first_line(exc)})")
        program = made["program"]
        if isinstance(program, _Refused):
            raise program
        return program

    def onnx_program() -> Callable[..., Tensor]:
        from ganforge_core.onnx_export import write_onnx

        opset, program = write_onnx(exported_program(), trace_inputs, out / ONNX)
        config["onnx_opset"] = opset
        return program

    makers: dict[str, Callable[[], Callable[..., Tensor]]] = {
        "torch.export": lambda: _written(out / PROGRAM, _torch_export(exported_program())),
        "torchscript": lambda: _written(out / SCRIPT, _torchscript(generator, trace_inputs)),
        "onnx": onnx_program,
    }
    kept = []
    for kind in kinds:
        path = out / PROGRAMS[kind]
        try:
            program = makers[kind]()
        except _Refused as exc:
            skipped[kind] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure means "this architecture cannot be exported this way"
            skipped[kind] = f"{MAKERS[kind]} failed ({_first_line(exc)})"
        else:
            skipped.update(_check(kind, program, check_inputs, expected))
        if kind in skipped:
            path.unlink(missing_ok=True)
        else:
            kept.append(path)
    return kept


def _written(path: Path, made: tuple[bytes, Callable[..., Tensor]]) -> Callable[..., Tensor]:
    """Write a program's bytes as ``path`` (atomically); the program."""
    data, program = made
    _write(path, data)
    return program


def _write(path: Path, data: bytes) -> None:
    """``data`` as ``path``, complete or not at all; a full disk is an OSError naming ``path``."""
    ckpt.write_atomic(path, lambda handle: handle.write(data))


def _check(kind: str, program: Callable[..., Tensor], inputs: tuple[Tensor, ...], expected: Tensor) -> dict[str, str]:
    """{kind: reason} if the program, made at batch size TRACE_BATCH, is wrong at CHECK_BATCH."""
    try:
        with torch.no_grad():
            got = program(*inputs)
    except Exception as exc:  # noqa: BLE001
        return {kind: f"the program made at batch size {TRACE_BATCH} fails at {CHECK_BATCH} ({_first_line(exc)})"}
    if not (isinstance(got, Tensor) and got.shape == expected.shape and torch.allclose(got, expected, rtol=TOLERANCE["rtol"], atol=TOLERANCE["atol"])):
        return {kind: f"the program's output differs from the generator's at batch size {CHECK_BATCH}"}
    return {}


def _first_line(exc: Exception) -> str:
    """The exception's type and first line; torch.export's "Constraints violated (batch)!"
    gains its first "- ..." line, which says what the code did to the batch size."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0].split(" For more information", 1)[0] if lines else ""
    detail = next((line for line in lines[1:2] if line.startswith("- ")), None)
    if detail is not None:
        text = f"{text} {detail[2:].split('. ', 1)[0]}"
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _export_program(generator: nn.Module, inputs: tuple[Tensor, ...]) -> ExportedProgram:
    from torch.export import Dim, export

    batch = Dim("batch", min=1)
    return export(generator, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))


def _torch_export(program: ExportedProgram) -> tuple[bytes, Callable[..., Tensor]]:
    """The program's file contents, and the program loaded back from them."""
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
    """``config.json`` without its ``files``, ``skipped`` and ``onnx_opset`` entries."""
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
    """``config.json`` of an export (``generator.json`` of a format-1 one), checked.
    Raises a one-line :class:`CheckpointError`."""
    found = [(v, directory / layout[0]) for v, layout in LAYOUTS.items() if (directory / layout[0]).is_file()]
    if not found:
        raise CheckpointError(f"no {CONFIG} in {directory}: not a ganforge export")
    version, path = found[0]
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON") from None
    check_config(config, path, version)
    return config


def check_config(config: Any, where: Path | str, version: int = FORMAT_VERSION) -> None:
    """That ``config`` (read from ``where``, a file of layout ``version``) describes a
    ganforge generator export; else a one-line :class:`CheckpointError`."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{where} does not describe a ganforge generator export")
    if config.get("format_version") != version:
        raise CheckpointError(f"{where} has export format {config.get('format_version')}; this ganforge reads {version}")


def build_generator(
    config: dict[str, Any], where: Path | str, device: str | torch.device = "cpu", plugins: Plugins | None = None
) -> nn.Module:
    """The untrained generator that a checked ``config`` describes, built by its plugin."""
    from ganforge_core.plugins import get_plugins

    try:
        name, options = config["generator"]["name"], config["generator"]["options"]
        shape, num_classes = tuple(int(s) for s in config["data_shape"]), int(config["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where} lacks the generator's name, options or data shape") from None
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
    return component.build(component.validate(options), ctx)


def load_weights(generator: nn.Module, weights: Path, name: str) -> None:
    """Load ``weights`` (safetensors, the generator's own keys) into ``generator``, all of them."""
    from safetensors.torch import load_file

    if not weights.is_file():
        raise CheckpointError(f"no {weights.name} in {weights.parent}")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type is not importable everywhere
        raise CheckpointError(f"{weights} is truncated or corrupt ({_first_line(exc)})") from None
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{weights} does not fit generator '{name}': {' '.join(lines[:2])}") from None


def load_generator(
    directory: Path | str, device: str | torch.device = "cpu", plugins: Plugins | None = None
) -> nn.Module:
    """The exported generator, rebuilt by its plugin and loaded from ``model.safetensors``.

    Returns the module in eval mode, without gradients. Call it as
    ``generator(z)`` (or ``generator(z, labels)`` when ``config.json`` has
    ``"conditional": true``) with ``z = torch.randn(n, z_dim)``.
    """
    directory = Path(directory)
    config = read_config(directory)
    config_name, weights_name = LAYOUTS[config["format_version"]]
    generator = build_generator(config, directory / config_name, device, plugins)
    load_weights(generator, directory / weights_name, config["generator"]["name"])
    return generator.to(device).eval().requires_grad_(False)
