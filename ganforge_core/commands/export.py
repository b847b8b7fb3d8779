"""``ganforge export``: a trained generator as safetensors + JSON, and programs that need only torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganforge_core.commands.common import user_errors, warn

USES = {
    "generator.safetensors": "weights; in Python: ganforge_core.export.load_generator(DIR){call}",
    "generator.json": "component, options, shapes, z_dim, classes, value range, how to draw z",
    "generator.pt2": "torch.export program; plain torch: torch.export.load(PATH).module(){call}",
    "generator.torchscript.pt": "TorchScript; plain torch (or C++): torch.jit.load(PATH){call}",
}


def export(
    source: Annotated[
        Path, typer.Argument(help="A run directory (its newest checkpoint that loads and fits) or a checkpoint file.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the export into (created if needed).")],
    ema: Annotated[
        bool, typer.Option("--ema/--no-ema", help="Export the EMA generator when the run keeps one.")
    ] = True,
) -> None:
    """Export the generator for use without ganforge: safetensors weights, a JSON config,
    and a torch.export and a TorchScript program where the architecture allows."""
    with user_errors():
        from ganforge_core.export import export_generator
        from ganforge_core.trained import load_trained

        exported = export_generator(load_trained(source, device="cpu", warn=warn), out, ema=ema)
    config = exported.config
    weights = "EMA weights" if config["ema"] else "G's own weights" + ("; the run keeps no EMA" if ema else "")
    typer.echo(f"exported generator '{config['generator']['name']}' at step {config['step']} ({weights}) to {out}")
    for path in exported.written:
        call = "(z, labels)" if config["num_classes"] else "(z)"
        typer.echo(f"  {path.name:26s} {USES.get(path.name, '').format(call=call)}")
    for kind, reason in exported.skipped.items():
        typer.echo(f"note: no {kind} program for this generator: {reason}")
