"""Random input never produces a traceback.

Hypothesis writes configuration files (JSON objects whose keys are mostly real
settings with arbitrary values, and arbitrary text as TOML) and hands them to
``ganforge run --config``; and it draws argument lists for every command of the
command line (below). Whatever the input, the command succeeds or exits with a
documented status and one ``error:`` line. ``GANFORGE_FUZZ_EXAMPLES`` sets how
many argument lists the whole-CLI fuzz tries (CI: the default, derandomized).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import annotated_types
import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ganforge_core import RunConfig
from ganforge_core import checkpoint as ckpt
from ganforge_core.cli import app
from ganforge_core.plugins import get_plugins
from test_reliability import TINY_ARGS
from test_reliability_processes import Zygote

# Flags that keep whatever trains tiny; the file decides everything else.
TINY = ["--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1", "--data", "ring-8:n=256"]
FORCED = {"generator", "discriminator", "dataset", "steps", "out", "device"}
SETTINGS = sorted(set(RunConfig.model_fields) - FORCED)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["bce", "wgan-gp", "hinge", "ema", "r1", "packing:m=3", "instance-noise:sigma=-1", "auto"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
config_objects = st.dictionaries(st.sampled_from(SETTINGS) | st.text(max_size=8), values, max_size=5)


def invoke(config_file: Path, scratch: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["run", "--config", str(config_file), *TINY, "--steps", "1", "--device", "cpu", "--out", str(scratch / "run"), "-q"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def check(code: int, output: str) -> None:
    assert "Traceback" not in output, output
    assert code in (0, 2, 3), (code, output)
    if code:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=config_objects)
def test_random_json_config_files_never_show_a_traceback(config: dict) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "run.json"
        path.write_text(json.dumps(config, allow_nan=True))
        check(*invoke(path, Path(scratch)))


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=80))
def test_random_toml_text_never_shows_a_traceback(text: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "run.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        check(*invoke(path, Path(scratch)))


# -- the whole command line ----------------------------------------------------------
#
# Every command of the app (plugin commands included), walked from typer's click
# tree, gets argument lists drawn from its own parameters: each component flag a
# registered component with options drawn from its options model, every other
# option a value of its kind, and each value sometimes hostile (past a limit,
# past 64 bits, non-finite, empty, unicode, control characters, huge). Each list
# runs as a real `ganforge` process (forked from a zygote that imported torch
# once) under a time and memory cap. Sizes a run would really allocate are drawn
# small or past their limits, never big and valid: a big valid size only costs
# time, and this test is about what is refused and how.

EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "100"))  # CI's fixed budget; raise it to search longer
TIME_CAP_S = 120.0  # one command, on a loaded machine; a quiet one takes well under a second
RSS_CAP = 3 << 30  # bytes of resident memory one command may reach
FUZZ_TRIED: list[tuple[str, int]] = []  # (command, exit status) of every example, for the counts in the docs

COMPONENT_FLAGS = {
    "--gen": "generator", "--disc": "discriminator", "--loss": "loss", "--reg": "regularizer",
    "--sched": "scheduler", "--data": "dataset", "--metric": "metric", "--logger": "logger",
}  # fmt: skip
# Flags whose valid values decide how much a command computes: drawn small or invalid.
WORK = {"--steps", "--batch-size", "--n", "--interpolate", "--seeds", "--jobs"}
CHOICES = {
    "--device": ["cpu", "auto", "cuda", "cuda:7", "mps", "tpu"],
    "--precision": ["fp32", "bf16", "fp16", "auto", "fp8"],
    "--on-nan": ["stop", "skip", "ignore"],
    "--dist-backend": ["auto", "gloo", "nccl", "mpi"],
    "--preset": ["dcgan-mnist", "wgan-gp-ring", "nosuch"],
    "--label": ["0", "3", "-1", "99", "2**70"],
    "--betas": ["0.5,0.999", "0.0,0.9", "1,1", "nan,0.9", "0.5", "a,b", "0.5,0.9,0.1"],
    "--recipe": ["default", "nosuch"],
}

hostile_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "\x00", "\r\n", "\u2028", "é", "名字", "\U0001f600", "-", "--", "=", ",", ":", "a=b"]),
    st.integers(min_value=10_000, max_value=300_000).map(lambda n: "x" * n),  # huge
)
hostile_numbers = st.sampled_from(
    ["0", "-1", "-0", "1e309", "inf", "-inf", "nan", "NaN", "Infinity", str(2**63), str(2**64), str(-(2**70)),
     "1" * 400, "0x10", "1_000", "١٢", "1.5", "true", "+5"]
)  # fmt: skip
small = st.integers(min_value=1, max_value=4).map(str)


def _bounds(info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            low = getattr(meta, "ge", getattr(meta, "gt", None))
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            high = getattr(meta, "le", getattr(meta, "lt", None))
    return low, high


def option_values(info: Any) -> st.SearchStrategy[str]:
    """Values for one field of a component's options: valid ones of its type, and hostile ones."""
    kinds = {info.annotation, *get_args(info.annotation)}
    low, high = _bounds(info)
    hostile = st.one_of(hostile_numbers, hostile_text)
    if bool in kinds:
        return st.one_of(st.sampled_from(["true", "false", "1", "0", "yes", "maybe"]), hostile)
    if int in kinds:
        start = int(low) if low is not None else 0
        past = [str(int(low) - 1)] if low is not None else []
        past += [str(int(high) + 1)] if high is not None else []  # the limit itself is valid, and costly
        return st.one_of(st.integers(start, start + 3).map(str), st.sampled_from(past or ["-1"]), hostile)
    if float in kinds:
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), hostile)
    literal = [a for a in get_args(info.annotation) if isinstance(a, str | int)]
    return st.one_of(st.sampled_from([*map(str, literal), "nosuch"]) if literal else hostile_text, hostile)


def component_choices(kind: str) -> st.SearchStrategy[str]:
    """``NAME`` or ``NAME:key=value,...`` for a registered component of ``kind`` (or not one)."""
    registry = get_plugins().registry
    options = []
    for component in registry.all(kind):
        fields = component.options.model_fields
        if not fields:
            options.append(st.just(component.name))
            continue
        pair = st.sampled_from(sorted(fields)).flatmap(lambda key, f=fields: option_values(f[key]).map(lambda v, k=key: f"{k}={v}"))
        pairs = st.lists(st.one_of(pair, hostile_text.map(lambda t: f"{t}=1")), max_size=3)
        options.append(pairs.map(lambda items, name=component.name: name + (":" + ",".join(items) if items else "")))
    return st.one_of(*options, hostile_text) if options else hostile_text


def _config_text(value: dict) -> str:
    return json.dumps(value, allow_nan=True)


def commands() -> list[tuple[list[str], Any]]:
    """Every (leaf) command of the app, plugin commands included: (its words, its click command)."""
    found = []

    def walk(command: Any, words: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found.append((words, command))
            return
        for name, sub in sorted(subs.items()):
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


@st.composite
def path_values(draw: st.DrawFn, fixtures: dict[str, Path]) -> str:
    """A path: the tiny trained run, its checkpoint, a config file of random (nested) content,
    a directory, a missing or unusable path."""
    choice = draw(st.sampled_from(["run", "checkpoint", "config", "fresh", "missing", "dir", "hostile"]))
    if choice == "run":
        return str(fixtures["run"])
    if choice == "checkpoint":
        return str(ckpt.list_checkpoints(fixtures["run"])[-1])
    if choice == "config":
        depth = draw(st.integers(0, 40))
        inner: Any = draw(values)
        for _ in range(depth):
            inner = {"a": inner}
        name = f"c{draw(st.integers(0, 10**6))}{draw(st.sampled_from(['.json', '.toml', '.txt']))}"
        path = fixtures["scratch"] / name
        body = draw(st.dictionaries(st.sampled_from(SETTINGS) | st.text(max_size=6), values, max_size=3))
        text = _config_text({**body, "nested": inner}) if name.endswith(".json") else draw(st.text(max_size=60))
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return str(path)
    if choice == "fresh":
        return str(fixtures["scratch"] / f"new{draw(st.integers(0, 10**9))}")
    if choice == "dir":
        return str(fixtures["scratch"])
    if choice == "missing":
        return "/nonexistent/nowhere"
    return draw(st.sampled_from(["", "/", "/proc/self/mem", "/dev/null", "x" * 5000, "\x00a", "名字/🙂", "a\nb"]))


@st.composite
def argument_lists(draw: st.DrawFn, fixtures: dict[str, Path]) -> list[str]:
    """A command and some of its own parameters, each with a value of its kind."""
    words, command = draw(st.sampled_from(commands()))
    args: list[str] = []
    params = [p for p in command.params if p.opts]
    chosen = draw(st.lists(st.sampled_from(params), max_size=6)) if params else []
    chosen += [p for p in params if p.required and p not in chosen]
    for param in chosen:
        opt = param.opts[0]
        if getattr(param, "is_flag", False):
            args.append(draw(st.sampled_from([*param.opts, *param.secondary_opts])))
            continue
        if opt in COMPONENT_FLAGS:
            value = draw(component_choices(COMPONENT_FLAGS[opt]))
        elif opt in WORK:
            value = draw(st.one_of(small, hostile_numbers))
        elif opt in CHOICES:
            value = draw(st.one_of(st.sampled_from(CHOICES[opt]), hostile_text))
        elif "path" in repr(getattr(param, "type_descriptor", "")).lower() or opt in {"source", "page", "--out", "--config", "--resume", "--runs-dir"}:
            value = draw(path_values(fixtures))
        else:
            value = draw(st.one_of(small, hostile_numbers, hostile_text))
        if param.param_type_name == "argument":
            args.append(value)
        else:
            args += [opt, value]
    # What a command computes when a flag is left out (a run's length, its end-of-run metrics,
    # a benchmark's seeds) is minutes of valid work: not the point here.
    cheap = {"run": {"--steps": "1", "--metric": "none"}, "bench": {"--steps": "1", "--seeds": "1", "--jobs": "1"}}
    for flag, value in cheap.get(words[0], {}).items():
        if flag not in args and "--resume" not in args:
            args += [flag, value]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["--help", "--nosuch", "extra", "--steps=", "-q"])))
    return [*words, *args]


def run_capped(zygote: Zygote, cwd: Path, args: list[str]) -> tuple[int, str, str]:
    """``ganforge ARGS`` forked from the zygote; killed past the time or memory cap (a failure)."""
    process = zygote.run(cwd, *args)
    deadline, peak = time.monotonic() + TIME_CAP_S, 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1]) * 1024)
        except (OSError, StopIteration, ValueError):
            pass
        if peak > RSS_CAP or time.monotonic() > deadline:
            process.send_signal(9)
            process.finish()
            pytest.fail(f"ganforge {args!r} ran past the cap ({peak / 2**20:.0f} MiB resident)")
        time.sleep(0.02)
    return process.finish()


def check_outcome(args: list[str], code: int, out: str, err: str) -> None:
    shown = repr(args)[:600]
    assert "Traceback" not in out + err, (shown, err[-3000:])
    assert code in (0, 1, 2, 3), (shown, code, err[-2000:])
    if code:
        lines = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error:"), (shown, err[-3000:])
        assert len(lines[0]) <= 2100, (shown, len(lines[0]))


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Zygote, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("fuzz")
    zygote = Zygote(root)
    try:
        run = root / "trained"
        code, _, err = zygote.run(root, "run", *TINY_ARGS, "--batch-size", "16", "--steps", "2", "--metric", "none",
                                  "--out", run, "-q").finish()  # fmt: skip
        assert code == 0, err
        yield zygote, {"run": run, "scratch": root / "scratch"}
    finally:
        zygote.close()


def test_every_command_flag_and_option_ends_in_one_line_or_success(fuzz_world: tuple[Zygote, dict[str, Path]]) -> None:
    """Promise: whatever arguments any command gets, it succeeds or prints one ``error:`` line
    with a documented exit status, never a traceback, within a time and memory cap."""
    zygote, fixtures = fuzz_world
    assert {"run", "sample", "eval", "export", "plugins", "bench"} <= {words[0] for words, _ in commands()}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        scratch = fixtures["scratch"]
        scratch.mkdir(exist_ok=True)
        args = data.draw(argument_lists(fixtures))
        code, out, err = run_capped(zygote, scratch, args)
        FUZZ_TRIED.append((args[0], code))
        check_outcome(args, code, out, err)

    fuzz()
    assert len(FUZZ_TRIED) >= EXAMPLES
    outcomes: dict[str, dict[int, int]] = {}
    for command, code in FUZZ_TRIED:
        outcomes.setdefault(command, {}).setdefault(code, 0)
        outcomes[command][code] += 1
    print(f"fuzz: {len(FUZZ_TRIED)} argument lists; exit statuses per command: {outcomes}")


# What the fuzz found, each kept as a regression example (run in the scratch directory,
# where no docs/ exists), with the line it must now print.
FOUND = [
    (["docs", "hooks"], 1, "cannot update docs/hooks.md: No such file or directory"),  # was a traceback
    (["docs", "hooks", "/proc/self/mem"], 1, "cannot update /proc/self/mem: Input/output error"),
]


@pytest.mark.parametrize(("args", "status", "named"), FOUND)
def test_inputs_the_fuzz_found_end_in_one_line(
    fuzz_world: tuple[Zygote, dict[str, Path]], args: list[str], status: int, named: str
) -> None:
    zygote, fixtures = fuzz_world
    fixtures["scratch"].mkdir(exist_ok=True)
    code, out, err = run_capped(zygote, fixtures["scratch"], args)
    check_outcome(args, code, out, err)
    assert code == status, err
    assert named in err
