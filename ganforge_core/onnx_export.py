"""``generator.onnx`` of ``ganforge export --format onnx`` (the ``onnx`` extra).

The ONNX file is converted from the same ``torch.export`` program as ``generator.pt2``
(batch size free), by torch's dynamo-based exporter (``torch.onnx.export(program,
dynamo=True)``, which needs ``onnxscript``). The TorchScript-based exporter
(``dynamo=False``) is deprecated for removal, and traces: a generator that reads its
batch size as a Python number would come out fixed to the traced batch with at
most a warning. Starting from the ``torch.export`` program instead refuses such a
generator with torch.export's own reason. Both run offline.

The graph's inputs are ``z`` ([batch, z_dim], float32) and, for a conditional
generator, ``labels`` ([batch], int64); its output is ``x``. The batch axis is named
``batch``. onnxruntime runs the file once, at another batch size, to check it
against the generator before it is kept (:func:`ganforge_core.export._check`).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganforge_core.errors import ConfigError

if TYPE_CHECKING:
    from torch.export import ExportedProgram

INPUTS = ("z", "labels")
OUTPUT = "x"
BATCH_AXIS = "batch"
NEEDS = ("onnx", "onnxscript", "onnxruntime")  # write, convert (torch's exporter), check


def require_onnx() -> None:
    """A one-line ConfigError unless the packages ``--format onnx`` uses are installed."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"--format onnx needs {', '.join(missing)}, which is not installed: pip install 'ganforge[onnx]'"
        )


def write_onnx(program: ExportedProgram, inputs: tuple[Tensor, ...], path: Path) -> tuple[int, Callable[..., Tensor]]:
    """Write ``program`` (made on ``inputs``) to ``path`` as ONNX; its opset, and a callable
    that runs the file with onnxruntime on the CPU."""
    import onnx
    import onnxruntime

    names = list(INPUTS[: len(inputs)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own passes; the check answers for the file
        converted = torch.onnx.export(
            program, inputs, dynamo=True, input_names=names, output_names=[OUTPUT], verbose=False, report=False
        )
    if converted is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = converted.model_proto
    _name_batch_axis(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*given: Tensor) -> Tensor:
        feeds = {name: tensor.numpy() for name, tensor in zip(names, given, strict=True)}
        return torch.from_numpy(session.run([OUTPUT], feeds)[0])

    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    return opset, run


def _name_batch_axis(model: object) -> None:
    """Call the inputs' shared first axis (torch.export's symbol, such as ``s35``) ``batch``
    wherever the graph uses that symbol."""
    graph = model.graph  # type: ignore[attr-defined]
    symbol = graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if not symbol:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_AXIS
