"""The run flags are RunConfig's fields: one flag each, its help the field's description.

``ganforge run`` and ``ganforge config show`` generate their options from
``RunConfig.model_fields`` (each field's ``Flag`` metadata); these meta-tests fail
when a field has no flag, two, a help of its own, or a default that is not the field's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import typer.main
from typer.testing import CliRunner

from ganforge_core import RunConfig
from ganforge_core.cli import app
from ganforge_core.commands import training
from ganforge_core.commands.common import FLAGS
from ganforge_core.config import LENGTH, Flag, field_flags

FIELDS = RunConfig.model_fields
HELP_DEFAULT = re.compile(r" \[default: (?P<shown>[^\]]*)\]$")

# What each flag is given here, and the Python value it must set (validated the same way).
SAMPLES: dict[str, tuple[list[str], Any]] = {
    "generator": (["--gen", "mlp:hidden=8"], "mlp:hidden=8"),
    "discriminator": (["--disc", "mlp"], "mlp"),
    "loss": (["--loss", "hinge"], "hinge"),
    "regularizers": (["--reg", "r1:gamma=5", "--reg", "ema"], ["r1:gamma=5", "ema"]),
    "scheduler": (["--sched", "ttur"], "ttur"),
    "dataset": (["--data", "ring-8:n=256"], "ring-8:n=256"),
    "metrics": (["--metric", "none"], []),
    "conditional": (["--conditional"], True),
    "mirror": (["--mirror"], True),
    "data_mode": (["--data-mode", "streamed"], "streamed"),
    "data_workers": (["--data-workers", "0"], 0),
    "steps": (["--steps", "7"], 7),
    "epochs": (["--epochs", "2.5"], 2.5),
    "batch_size": (["--batch-size", "3"], 3),
    "lr_g": (["--lr-g", "0.01"], 0.01),
    "lr_d": (["--lr-d", "0.02"], 0.02),
    "betas": (["--betas", "0.1,0.2"], (0.1, 0.2)),
    "seed": (["--seed", "9"], 9),
    "device": (["--device", "cpu"], "cpu"),
    "out": (["--out", "somewhere"], Path("somewhere")),
    "log_every": (["--log-every", "4"], 4),
    "sample_every": (["--sample-every", "0"], 0),
    "checkpoint_every": (["--checkpoint-every", "0"], 0),
    "keep_checkpoints": (["--keep-checkpoints", "5"], 5),
    "loggers": (["--logger", "tensorboard"], ["tensorboard"]),
    "on_nan": (["--on-nan", "skip"], "skip"),
    "precision": (["--precision", "bf16"], "bf16"),
    "cuda_graph": (["--no-cuda-graph"], False),
    "channels_last": (["--no-channels-last"], False),
    "fused_adam": (["--no-fused-adam"], False),
    "cudnn_benchmark": (["--no-cudnn-benchmark"], False),
    "sync_batchnorm": (["--sync-batchnorm"], True),
    "dist_backend": (["--dist-backend", "gloo"], "gloo"),
}


def options_of(*path: str) -> dict[str, click.Parameter]:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {param.name: param for param in command.params if param.name is not None}


def test_every_run_config_field_carries_exactly_one_flag() -> None:
    marks = {name: [m for m in info.metadata if isinstance(m, Flag)] for name, info in FIELDS.items()}
    assert {name: len(found) for name, found in marks.items()} == dict.fromkeys(FIELDS, 1)
    names = [found[0].name for found in marks.values()]
    assert len(set(names)) == len(names), "two fields share a flag"
    assert field_flags() == {name: found[0] for name, found in marks.items()}
    assert FLAGS == {name: found[0].name for name, found in marks.items()}


@pytest.mark.parametrize("command", [("run",), ("config", "show")], ids=" ".join)
def test_each_field_is_one_option_named_by_its_flag_with_its_description_as_help(command: tuple[str, ...]) -> None:
    options = options_of(*command)
    own = {"run": {"resume", "quiet"}, "show": {"as_json"}}[command[-1]]
    assert set(options) == set(FIELDS) | {"config", "preset"} | own
    for name, flag in field_flags().items():
        option = options[name]
        assert option.opts == [flag.name]
        description = FIELDS[name].description
        assert description and option.help is not None
        empty = f" Give '{flag.empty}' for none." if flag.empty else ""
        assert HELP_DEFAULT.sub("", option.help) == description + empty, name
        assert option.default is None, f"{name}: not given must stay None, so a --config file's value stands"
        is_switch = FIELDS[name].annotation is bool
        assert option.secondary_opts == ([f"--no-{flag.name[2:]}"] if is_switch and flag.negatable else [])


def test_the_default_the_help_shows_is_the_default_a_run_gets() -> None:
    options, defaults = options_of("run"), RunConfig()
    for name, flag in field_flags().items():
        match = HELP_DEFAULT.search(options[name].help or "")
        assert match is not None, f"{name}: no [default: ...] in its help"
        shown = match["shown"]
        if flag.derived is not None:
            assert getattr(defaults, name) is None and shown == flag.derived
            continue
        value: Any = {"on": True, "off": False}.get(shown, shown) if FIELDS[name].annotation is bool else shown
        if shown == "none" and isinstance(getattr(defaults, name), list):
            value = []
        assert getattr(RunConfig.model_validate({name: value}), name) == getattr(defaults, name), name


def test_run_help_lists_every_flag() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    listed = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", result.output))
    expected = {flag.name for flag in field_flags().values()}
    expected |= {f"--no-{f.name[2:]}" for n, f in field_flags().items() if FIELDS[n].annotation is bool and f.negatable}
    assert listed == expected | {"--config", "--preset", "--resume", "--quiet", "--help"}


def captured(args: list[str]) -> training.Flags:
    seen: list[training.Flags] = []
    probe = typer.Typer()

    @probe.command()
    @training.takes_run_flags
    def capture(flags: training.Flags) -> None:
        seen.append(flags)

    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 0, result.output
    (flags,) = seen
    return flags


@pytest.mark.parametrize("length", LENGTH)
def test_every_flag_sets_its_field(length: str) -> None:
    assert set(SAMPLES) == set(FIELDS), "give each RunConfig field a sample flag here"
    # --steps and --epochs both set the run's length: one at a time
    samples = {name: sample for name, sample in SAMPLES.items() if name == length or name not in LENGTH}
    expected = RunConfig.model_validate({name: value for name, (_, value) in samples.items()})
    defaults = RunConfig()
    assert [n for n in samples if getattr(expected, n) == getattr(defaults, n)] == []  # each sample changes its field
    flags = captured([arg for args, _ in samples.values() for arg in args])
    assert flags.config() == expected


def test_flags_not_given_are_left_to_the_config_file() -> None:
    flags = captured([])
    assert flags.given == {} and flags.config_file is None and flags.preset is None
    assert captured(["--metric", "fid", "--betas", "", "--cuda-graph"]).given == {"metrics": ["fid"], "cuda_graph": True}
