"""``ganforge bench``, a built-in plugin: it adds its command through ``ganforge_register_commands``.

The protocols, recipes and published rows are in :mod:`ganforge_bench.bench`;
``docs/benchmarks.md`` has what they measured. Importing this package imports
neither torch nor numpy: the runs import them when they train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganforge_bench import bench
from ganforge_core import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def ganforge_register_commands(cli: typer.Typer) -> None:
    cli.command("bench")(bench.command)
