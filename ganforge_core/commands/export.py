"""``ganforge export``: a trained generator in the Hugging Face Hub's layout, and programs that need only torch or ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganforge_core.commands.common import user_errors, warn

USES = {
    "model.safetensors": "weights; in Python: ganforge_core.export.load_generator(DIR){call}",
    "config.json": "component, options, shapes, z_dim, classes, value range, how to draw z",
    "generator.pt2": "torch.export program; plain torch: torch.export.load(PATH).module(){call}",
    "generator.torchscript.pt": "TorchScript; plain torch (or C++): torch.jit.load(PATH){call}",
    "generator.onnx": "ONNX; onnxruntime.InferenceSession(PATH).run(None, {inputs})",
}


def export(
    source: Annotated[
        Path, typer.Argument(help="A run directory (its newest checkpoint that loads and fits) or a checkpoint file.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the export into (created if needed).")],
    ema: Annotated[
        bool, typer.Option("--ema/--no-ema", help="Export the EMA generator when the run keeps one.")
    ] = True,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Programs to write besides config.json and model.safetensors (always written): "
            "'torch' (generator.pt2 and generator.torchscript.pt) or 'onnx' (generator.onnx; "
            "pip install 'ganforge[onnx]'); repeat for both. Without --format: torch, and a "
            "program the generator cannot be made into is left out with a note. A format given "
            "here must be made, or the export is refused (exit 2) and nothing is written.",
        ),
    ] = None,
) -> None:
    """Export the generator for use without ganforge, in the layout the Hugging Face Hub
    expects (config.json + model.safetensors), with a torch.export and a TorchScript
    program, or an ONNX one, where the architecture allows."""
    with user_errors():
        from ganforge_core.export import export_generator
        from ganforge_core.trained import load_trained

        exported = export_generator(load_trained(source, device="cpu", warn=warn), out, ema=ema, formats=formats)
    config = exported.config
    weights = "EMA weights" if config["ema"] else "G's own weights" + ("; the run keeps no EMA" if ema else "")
    typer.echo(f"exported generator '{config['generator']['name']}' at step {config['step']} ({weights}) to {out}")
    call = "(z, labels)" if config["num_classes"] else "(z)"
    feeds = "{'z': z, 'labels': labels}" if config["num_classes"] else "{'z': z}"
    for path in exported.written:
        typer.echo(f"  {path.name:26s} {USES.get(path.name, '').format(call=call, inputs=feeds)}")
    for kind, reason in exported.skipped.items():
        typer.echo(f"note: no {kind} program for this generator: {reason}")
