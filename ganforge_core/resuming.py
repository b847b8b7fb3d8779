"""What ``ganforge run --resume DIR`` continues from, and what it refuses.

* The configuration is the checkpoint's, with the changes ``--resume`` allows
  (``config.RESUME_CHANGES``: ``--steps``, ``--device``, ``--dist-backend``, ``--data-mode``,
  ``--data-workers``; none changes the batches): :func:`saved_config`.
* ``config.toml`` and ``config.json`` in the run directory are the run's own record,
  rewritten on every start. One edited since (a setting that differs from the
  checkpoint's) is refused, naming the settings, rather than silently overwritten:
  :func:`check_config_files`.
* The run goes on from the newest checkpoint that loads *and* fits the networks its
  configuration builds; each newer one is set aside with a warning naming both files:
  :func:`load_run`.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganforge_core import checkpoint as ckpt
from ganforge_core.config import Plan, RunConfig, resolve
from ganforge_core.errors import ConfigError, quote
from ganforge_core.reporting import without_none

if TYPE_CHECKING:
    from ganforge_core.distributed import World
    from ganforge_core.plugins import Plugins
    from ganforge_core.run import Run

CONFIG_FILES = ("config.toml", "config.json")
SHOWN = 5  # differing settings an error line names


def saved_config(state: dict[str, Any], changes: dict[str, Any]) -> RunConfig:
    """The checkpoint's configuration (valid: load_safe checked it) with ``changes`` applied;
    an invalid change (``--steps 0``) is a ValidationError blamed on its flag, as for a new run."""
    return RunConfig.model_validate({**json.loads(state["config"]), **changes})


def check_config_files(run_dir: Path, checkpoint: Path, state: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse to resume when ``config.toml`` or ``config.json`` was edited since the run wrote it.

    Compared with the checkpoint's configuration: every setting but ``out`` (a moved run
    directory is the same run) and those given as flags now (``overrides``), which the
    rewritten file will hold."""
    saved = _flat(RunConfig.model_validate_json(state["config"]).model_dump(mode="json"))
    ignored = {"out", *overrides}
    for name in CONFIG_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
            written = _flat(RunConfig.model_validate(data).model_dump(mode="json"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # TOML's, JSON's, pydantic's
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{path} no longer holds this run's configuration ({problem}); {_how(path, checkpoint)}"
            ) from None
        differ = sorted(
            key
            for key in saved.keys() | written.keys()
            if key.split(".")[0] not in ignored and saved.get(key, "unset") != written.get(key, "unset")
        )
        if differ:
            shown = ", ".join(
                f"{key} {quote(written.get(key, 'unset'))} (the run's {quote(saved.get(key, 'unset'))})"
                for key in differ[:SHOWN]
            )
            more = f" and {len(differ) - SHOWN} more" if len(differ) > SHOWN else ""
            steps = "; to train longer, pass --steps N instead" if "steps" in differ else ""
            raise ConfigError(f"{path} was edited: {shown}{more}{steps}; {_how(path, checkpoint)}")


def _how(path: Path, checkpoint: Path) -> str:
    return (
        f"--resume continues the run as {checkpoint} configures it and rewrites {path.name}; "
        f"undo the edit (or delete {path.name}) to resume, or train the edited configuration "
        f"as a new run: ganforge run --config {path} --out NEW"
    )


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"generator.options.hidden": 16, ...}`` (lists stay whole). A
    ``None`` is left out: TOML has no null, so config.toml leaves such a setting unset."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif value is not None:
            flat[f"{prefix}{key}"] = without_none(value)
    return flat



def load_run(
    plan: Plan, plugins: Plugins, world: World, first: ckpt.Loaded, changes: dict[str, Any]
) -> tuple[Run, Path, list[str]]:
    """The run in ``plan.config.out`` rebuilt from its newest checkpoint that fits (``first``,
    already loaded, is tried first; ``plan`` is its configuration), that checkpoint's path, and
    the warnings for the checkpoints passed over, which rank 0 sets aside as ``*.unloadable``."""
    from ganforge_core.run import Run

    run_dir = plan.config.out
    assert run_dir is not None

    def fit(path: Path, state: dict[str, Any]) -> Run:
        this = plan if path == first[0] else resolve(saved_config(state, changes), plugins.registry)
        run = Run(this, plugins, run_dir, world)
        run.load_state_dict(state, path)
        return run

    run, used, passed = ckpt.newest_that_fits(run_dir, fit, first)
    notes = []
    for (bad, _), line in zip(passed, ckpt.passed_over(passed, used), strict=True):
        if world.main:  # every rank passes it over; rank 0 renames it
            notes.append(f"{line}; set aside as {ckpt.set_aside(bad).name}")
    return run, used, notes
