"""Random configuration files never produce a traceback.

Hypothesis writes configuration files (JSON objects whose keys are mostly real
settings with arbitrary values, and arbitrary text as TOML) and hands them to
``ganforge run --config``. Whatever the file holds, the command either trains
or exits 2 (bad input) or 3 (divergence) with one ``error:`` line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ganforge_core import RunConfig
from ganforge_core.cli import app

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
