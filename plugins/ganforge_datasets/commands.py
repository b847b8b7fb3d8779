"""``ganforge data``: the dataset commands (``prepare``), added through ``ganforge_register_commands``.

Importing this module imports neither torch nor numpy (``ganforge --help`` loads it);
the command imports :mod:`ganforge_datasets.prepare` when it runs.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ganforge_core import ConfigError

if TYPE_CHECKING:
    from ganforge_datasets.images import Policy

app = typer.Typer(help="Prepare datasets for training.", no_args_is_help=True)


class PolicyChoice(str, Enum):
    center_crop = "center-crop"
    pad = "pad"
    refuse = "refuse"


@app.command("prepare")
def prepare_command(
    src: Annotated[Path, typer.Argument(help="A folder of images (sub-folders are classes) or an NVlabs zip of PNGs.")],
    out: Annotated[Path, typer.Option("--out", help="The directory to write; it must not exist yet.")],
    size: Annotated[
        int | None,
        typer.Option(min=8, max=1024, help="Side of the square images. [default: 64 for a folder, a zip's own]"),
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="1: greyscale, 3: RGB. [default: 3 for a folder, a zip's own]")
    ] = None,
    policy: Annotated[
        PolicyChoice, typer.Option(help="Non-square images: the centred square, black borders, or an error.")
    ] = PolicyChoice.center_crop,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip (and count) files that cannot be decoded, instead of stopping.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decoding processes. [default: one per CPU core]")
    ] = None,
) -> None:
    """Decode a folder of images or an NVlabs zip once into uint8 shards, for --data prepared:root=DIR."""
    # A GanforgeError raised here is one line: ganforge wraps every plugin command.
    if channels not in (None, 1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {channels}")
    from ganforge_datasets.prepare import prepare

    report = prepare(src, out, size=size, channels=channels, policy=cast("Policy", policy.value), skip_bad=skip_bad, workers=workers)
    typer.echo(report.line())
