"""The plugin manager: third-party plugins, load problems, the allow-list, and every hook.

Plugins here are registered through ``Plugins(extra=[(name, obj)])``, the same
path entry points take after import; one test builds a real distribution on
disk to check entry-point import failures. The last test is datasette's
meta-test: every hook in ``ganforge_core.hookspecs`` has a ``test_hook_<name>``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel, Field
from torch import nn

from ganforge_core import (
    Dataset,
    Loss,
    Metric,
    NoOptions,
    Options,
    Recommendation,
    Regularizer,
    RunConfig,
    Schedule,
    ScheduleOptions,
    get_registry,
    hookimpl,
    hookspecs,
)
from ganforge_core import checkpoint as ckpt
from ganforge_core.errors import ConfigError
from ganforge_core.plugins import ALLOW_LIST_VARIABLE, Plugins
from ganforge_core.registry import Component, Registry
from ganforge_losses.critics import HingeLoss
from ganforge_core.session import RunContext, train

BUILTIN = get_registry()


def problems_of(plugins: Plugins, plugin: str) -> list[str]:
    return [p.reason for p in plugins.registry.problems if p.plugin == plugin]


def all_names(plugins: Plugins) -> set[tuple[str, str]]:
    return {(c.kind, c.name) for c in plugins.registry.all()}


@pytest.fixture(autouse=True)
def every_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_LIST_VARIABLE, raising=False)


# -- a complete third-party plugin: one component of every kind ------------------------


class LineOptions(Options):
    n: int = Field(256, ge=16, description="points on the line")


class LinearGenerator(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.z_dim = 2
        self.shape = shape
        self.net = nn.Linear(2, math.prod(shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, *self.shape)


class LinearCritic(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class SoftplusLoss(Loss):
    def d_loss(self, real_logits, fake_logits, ctx):
        return nn.functional.softplus(-real_logits).mean() + nn.functional.softplus(fake_logits).mean()

    def g_loss(self, fake_logits, ctx):
        return nn.functional.softplus(-fake_logits).mean()


class CountingRegularizer(Regularizer):
    def __init__(self) -> None:
        self.count = 0

    def after_g_step(self, generator, step):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = int(state.get("count", 0))


class HalvingOptions(ScheduleOptions):
    """Only ``d_steps``."""


class HalvingSchedule(Schedule):
    def lr_multiplier(self, step, total_steps):
        return 1.0 if step < total_steps / 2 else 0.5


class MeanMetric(Metric):
    def compute(self, generate, dataset):
        return {"mean-x": float(generate(64)[:, 0].mean())}


def line(options: LineOptions, ctx) -> Dataset:
    t = torch.linspace(-1, 1, options.n)
    return Dataset(samples=torch.stack([t, t], dim=1))


class ThirdParty:
    """Registers ``tp-*`` components of every kind and records the register callbacks it got."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _called(self, hook: str, register: Any) -> None:
        assert callable(register)
        self.calls[hook] = self.calls.get(hook, 0) + 1

    @hookimpl
    def ganforge_register_generators(self, register):
        self._called("ganforge_register_generators", register)
        register("tp-linear", lambda o, ctx: LinearGenerator(ctx.data_shape), summary="a linear map")

    @hookimpl
    def ganforge_register_discriminators(self, register):
        self._called("ganforge_register_discriminators", register)
        register(
            "tp-linear",
            lambda o, ctx: LinearCritic(ctx.d_input_shape or ctx.data_shape),
            summary="a one-hidden-layer critic",
        )

    @hookimpl
    def ganforge_register_losses(self, register):
        self._called("ganforge_register_losses", register)
        register(
            "tp-softplus",
            lambda o, ctx: SoftplusLoss(),
            options=NoOptions,
            summary="non-saturating loss written with softplus",
            recommends=Recommendation(lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.9), d_steps=2),
        )

    @hookimpl
    def ganforge_register_regularizers(self, register):
        self._called("ganforge_register_regularizers", register)
        register("tp-counter", lambda o, ctx: CountingRegularizer(), summary="counts G steps")

    @hookimpl
    def ganforge_register_schedulers(self, register):
        self._called("ganforge_register_schedulers", register)
        register(
            "tp-halving",
            lambda o, ctx: HalvingSchedule(o.d_steps),
            options=HalvingOptions,
            summary="halves the learning rates halfway",
        )

    @hookimpl
    def ganforge_register_datasets(self, register):
        self._called("ganforge_register_datasets", register)
        register("tp-line", line, options=LineOptions, summary="points on y = x", traits={"vector"})

    @hookimpl
    def ganforge_register_metrics(self, register):
        self._called("ganforge_register_metrics", register)
        register("tp-mean", lambda o, ctx: MeanMetric(), summary="mean of x", requires={"vector"})


class Recorder:
    """Implements every lifecycle hook and records what each call saw, at the time of the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [seen for name, seen in self.calls if name == hook]

    @hookimpl
    def ganforge_train_start(self, run: RunContext) -> None:
        run.warn("recorder saw the start")
        self.calls.append(
            (
                "ganforge_train_start",
                {
                    "run": run,
                    "start_step": run.start_step,
                    "checkpoints": len(ckpt.list_checkpoints(run.run_dir)),
                    "generator_is_module": isinstance(run.generator, nn.Module),
                    "discriminator_is_module": isinstance(run.discriminator, nn.Module),
                    "dataset_size": len(run.dataset),
                },
            )
        )

    @hookimpl
    def ganforge_step_end(self, run: RunContext, step: int, stats: dict[str, float]) -> None:
        logged = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
        self.calls.append(("ganforge_step_end", {"step": step, "stats": dict(stats), "last_logged": logged[-1]}))

    @hookimpl
    def ganforge_checkpoint_saved(self, run: RunContext, step: int, path: Any) -> None:
        state = ckpt.load_safe(path)
        self.calls.append(("ganforge_checkpoint_saved", {"step": step, "path": path, "saved_step": state["step"]}))

    @hookimpl
    def ganforge_train_end(self, run: RunContext, step: int, results: dict[str, float]) -> None:
        self.calls.append(
            (
                "ganforge_train_end",
                {"step": step, "results": dict(results), "samples": (run.run_dir / "samples.png").exists()},
            )
        )


def third_party_config(out: Path, **fields: Any) -> RunConfig:
    return RunConfig(
        generator="tp-linear",
        discriminator="tp-linear",
        loss="tp-softplus",
        regularizers=["tp-counter"],
        scheduler="tp-halving",
        dataset="tp-line",
        steps=7,
        batch_size=16,
        log_every=2,
        checkpoint_every=3,
        sample_every=0,
        keep_checkpoints=5,
        device="cpu",
        out=out,
        **fields,
    )


class Trained:
    def __init__(self, root: Path) -> None:
        self.third_party, self.recorder = ThirdParty(), Recorder()
        self.plugins = Plugins(extra=[("third-party", self.third_party), ("recorder", self.recorder)])
        self.out = root / "run"
        self.result = train(third_party_config(self.out), plugins=self.plugins, quiet=True)
        self.resumed_recorder = Recorder()
        resumed_plugins = Plugins(extra=[("third-party", ThirdParty()), ("recorder", self.resumed_recorder)])
        self.resumed = train(None, resume=self.out, overrides={"steps": 9}, plugins=resumed_plugins, quiet=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A 7-step run of third-party components only, then resumed to 9 steps."""
    return Trained(tmp_path_factory.mktemp("third-party"))


# -- registration hooks ------------------------------------------------------------


def assert_registered_once(trained: Trained, hook: str, kind: str, name: str) -> None:
    assert trained.third_party.calls[hook] == 1
    component = trained.plugins.registry.get(kind, name)  # type: ignore[arg-type]
    assert component.plugin == "third-party" and component.kind == kind
    assert problems_of(trained.plugins, "third-party") == []
    assert {(c.kind, c.name) for c in BUILTIN.all()} <= all_names(trained.plugins), "built-ins went missing"


def saved_config(trained: Trained) -> RunConfig:
    return RunConfig.model_validate_json((trained.out / "config.json").read_text())


def test_hook_ganforge_register_generators(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_generators", "generator", "tp-linear")
    assert saved_config(trained).generator.name == "tp-linear"


def test_hook_ganforge_register_discriminators(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_discriminators", "discriminator", "tp-linear")
    assert saved_config(trained).discriminator.name == "tp-linear"


def test_hook_ganforge_register_losses(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_losses", "loss", "tp-softplus")
    config = saved_config(trained)
    # The loss's recommendation applies: lr, betas and D steps per G step.
    assert (config.lr_g, config.lr_d, tuple(config.betas)) == (1e-3, 1e-3, (0.5, 0.9))
    assert config.scheduler.options["d_steps"] == 2


def test_hook_ganforge_register_regularizers(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_regularizers", "regularizer", "tp-counter")
    state = ckpt.load_safe(trained.resumed.checkpoint)
    assert state["regularizers"]["tp-counter"] == {"count": 9}, "one after_g_step per G step, kept across resume"


def test_hook_ganforge_register_schedulers(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_schedulers", "scheduler", "tp-halving")
    assert saved_config(trained).scheduler.name == "tp-halving"


def test_hook_ganforge_register_datasets(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_datasets", "dataset", "tp-line")
    assert saved_config(trained).dataset.options == {"n": 256}


def test_hook_ganforge_register_metrics(trained: Trained) -> None:
    assert_registered_once(trained, "ganforge_register_metrics", "metric", "tp-mean")
    # By default every metric the dataset supports runs, and none that it does not.
    assert set(trained.result.results) == {"tp-mean/mean-x"}
    assert math.isfinite(trained.result.results["tp-mean/mean-x"])


# -- lifecycle hooks ----------------------------------------------------------------


def test_hook_ganforge_train_start(trained: Trained) -> None:
    (seen,) = trained.recorder.of("ganforge_train_start")
    assert trained.recorder.calls[0][0] == "ganforge_train_start"
    assert seen["start_step"] == 0 and seen["checkpoints"] == 0
    assert seen["generator_is_module"] and seen["discriminator_is_module"]
    assert seen["dataset_size"] == 256
    run = seen["run"]
    assert run.run_dir == trained.out and run.config.steps == 7
    (resumed,) = trained.resumed_recorder.of("ganforge_train_start")
    assert resumed["start_step"] == 7, "on resume, train_start sees the step it resumes from"


def test_hook_context_warn_reaches_the_log(trained: Trained) -> None:
    records = [json.loads(line) for line in (trained.out / "metrics.jsonl").read_text().splitlines()]
    warnings = [r for r in records if r.get("event") == "warning"]
    assert [w["message"] for w in warnings] == ["recorder saw the start"] * 2


def test_hook_ganforge_step_end(trained: Trained) -> None:
    calls = trained.recorder.of("ganforge_step_end")
    assert [c["step"] for c in calls] == [2, 4, 6, 7]
    for call in calls:
        for key in ("loss/d", "loss/g"):
            assert isinstance(call["stats"][key], float) and math.isfinite(call["stats"][key])
        assert call["last_logged"]["step"] == call["step"], "hook ran before the line was logged"
        assert call["last_logged"]["loss/d"] == pytest.approx(call["stats"]["loss/d"])
    assert [c["step"] for c in trained.resumed_recorder.of("ganforge_step_end")] == [8, 9]


def test_hook_ganforge_checkpoint_saved(trained: Trained) -> None:
    calls = trained.recorder.of("ganforge_checkpoint_saved")
    assert [c["step"] for c in calls] == [3, 6, 7]
    for call in calls:
        assert call["path"] == ckpt.checkpoint_path(trained.out, call["step"])
        assert call["saved_step"] == call["step"]
    assert [c["step"] for c in trained.resumed_recorder.of("ganforge_checkpoint_saved")] == [9]
    assert trained.resumed.checkpoint == ckpt.checkpoint_path(trained.out, 9)


def test_hook_ganforge_train_end(trained: Trained) -> None:
    (seen,) = trained.recorder.of("ganforge_train_end")
    assert trained.recorder.calls[-1][0] == "ganforge_train_end"
    assert seen["step"] == 7 and seen["samples"]
    assert seen["results"] == trained.result.results and seen["results"]
    (resumed,) = trained.resumed_recorder.of("ganforge_train_end")
    assert resumed["step"] == 9 and trained.resumed.step == 9
    assert resumed["results"] == json.loads((trained.out / "results.json").read_text())


def test_lifecycle_hooks_are_called_in_order(trained: Trained) -> None:
    names = [name for name, _ in trained.recorder.calls]
    assert names == [
        "ganforge_train_start",
        "ganforge_step_end",  # 2
        "ganforge_checkpoint_saved",  # 3
        "ganforge_step_end",  # 4
        "ganforge_step_end",  # 6
        "ganforge_checkpoint_saved",  # 6
        "ganforge_step_end",  # 7
        "ganforge_checkpoint_saved",  # 7
        "ganforge_train_end",
    ]


# -- loggers: a kind of component like any other ------------------------------------


class TapeOptions(Options):
    tag: str = Field("tape", description="written into every record")


class TapeLogger:
    """Records every call a run makes, in order, with what the run directory held then."""

    tapes: list[list[tuple[Any, ...]]] = []

    def __init__(self, options: TapeOptions, run: RunContext) -> None:
        self.tape: list[tuple[Any, ...]] = [("start", options.tag, run.start_step, run.config.steps)]
        TapeLogger.tapes.append(self.tape)

    def log(self, step, stats):
        self.tape.append(("log", step, sorted(stats)))

    def samples(self, step, path):
        self.tape.append(("samples", step, path.name, path.is_file()))

    def checkpoint(self, step, path):
        self.tape.append(("checkpoint", step, path.name, ckpt.load_safe(path)["step"]))

    def end(self, step, results):
        self.tape.append(("end", step, sorted(results)))

    def close(self):
        self.tape.append(("close",))


class BrokenLogger(TapeLogger):
    def log(self, step, stats):
        raise RuntimeError("disk on fire")


class Loggers:
    @hookimpl
    def ganforge_register_loggers(self, register):
        register("tape", TapeLogger, options=TapeOptions, summary="records every call")
        register("broken", BrokenLogger, options=TapeOptions, summary="raises in log()")
        register("needy", TapeLogger, options=TapeOptions, summary="needs a package", needs=("no_such_package_xyz",))


def test_hook_ganforge_register_loggers(tmp_path: Path) -> None:
    TapeLogger.tapes.clear()
    plugins = Plugins(extra=[("loggers", Loggers())])
    assert plugins.registry.get("logger", "tape").plugin == "loggers"
    config = RunConfig(
        generator="mlp", dataset="ring-8:n=256", steps=4, batch_size=16, log_every=2, sample_every=3,
        checkpoint_every=2, device="cpu", out=tmp_path / "run", loggers=["tape:tag=first", "broken"],
    )  # fmt: skip
    result = train(config, plugins=plugins, quiet=True)
    (tape, broken) = TapeLogger.tapes
    stats = sorted(
        ["loss/d", "loss/g", "d/real", "d/fake", "d/accuracy/real", "d/accuracy/fake", "img/s", "lr/g", "lr/d"]
    )
    assert tape == [
        ("start", "first", 0, 4),
        ("log", 2, stats),
        ("checkpoint", 2, "checkpoint-00000002.pt", 2),
        ("samples", 3, "samples-00000003.png", True),
        ("log", 4, stats),
        ("checkpoint", 4, "checkpoint-00000004.pt", 4),
        ("samples", 4, "samples.png", True),
        ("end", 4, sorted(result.results)),
        ("close",),
    ]
    # The broken logger was dropped at its first failure, closed, and the run finished.
    assert broken == [("start", "tape", 0, 4), ("close",)]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    warnings = [r["message"] for r in records if r.get("event") == "warning"]
    assert warnings == ["plugin 'loggers': logger 'broken': log raised RuntimeError('disk on fire'); it logs nothing more"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["loggers"]
    assert saved == [{"name": "tape", "options": {"tag": "first"}}, {"name": "broken", "options": {"tag": "tape"}}]

    # Resumed, the loggers start again from the checkpoint's step.
    TapeLogger.tapes.clear()
    train(None, resume=tmp_path / "run", overrides={"steps": 6}, plugins=plugins, quiet=True)
    assert TapeLogger.tapes[0][0] == ("start", "first", 4, 6)
    assert [entry[:2] for entry in TapeLogger.tapes[0] if entry[0] == "log"] == [("log", 6)]


class PickyLoggers:
    @hookimpl
    def ganforge_register_loggers(self, register):
        def refuse(options, run):
            raise ConfigError("logger 'picky': its server is not configured")

        register("picky", refuse, summary="refuses to start")


def test_a_logger_that_refuses_to_start_stops_the_run_and_the_view_and_log_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ganforge_core.session as session

    closed: list[str] = []

    def recording(cls: type) -> Any:
        original = cls.close

        def close(self: Any) -> None:
            closed.append(cls.__name__)
            original(self)

        return close

    for cls in (session.ProgressView, session.MetricsLog):
        monkeypatch.setattr(cls, "close", recording(cls))
    plugins = Plugins(extra=[("picky", PickyLoggers())])
    config = RunConfig(
        generator="mlp", dataset="ring-8:n=256", steps=2, batch_size=16, loggers=["picky"], out=tmp_path / "run"
    )
    with pytest.raises(ConfigError, match=r"^logger 'picky': its server is not configured$"):
        train(config, plugins=plugins, quiet=True)
    assert sorted(closed) == ["MetricsLog", "ProgressView"]


def test_a_logger_that_needs_a_missing_package_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    from ganforge_core.errors import ConfigError

    plugins = Plugins(extra=[("loggers", Loggers())])
    config = RunConfig(generator="mlp", dataset="ring-8", steps=2, loggers=["needy"], out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^logger 'needy' needs the 'no_such_package_xyz' package, which is not installed: pip install no_such_package_xyz$"):
        train(config, plugins=plugins, quiet=True)
    assert not (tmp_path / "run").exists()


# -- problems are reported by plugin name; the rest still loads ----------------------


def registers(kind_hook: str, *names: str, **register_kwargs: Any) -> type:
    """A plugin class whose ``kind_hook`` registers each name with a trivial factory."""

    def hook(self, register):
        for name in names:
            register(name, lambda o, ctx: None, **{"summary": "test", **register_kwargs})

    hook.__name__ = kind_hook
    return type(f"Registers_{kind_hook}", (), {kind_hook: hookimpl(hook)})


Generators = registers("ganforge_register_generators", "extra-gen")


# -- names that clash: built-ins win; between third parties, nobody does ---------------


def offer(plugin: str, name: str = "hinge", kind: str = "loss") -> Component:
    return Component(kind=kind, name=name, factory=lambda o, ctx: None, options=NoOptions, plugin=plugin)  # type: ignore[arg-type]


def refused(label: str, builtin: str) -> str:
    return f"{label} is already provided by built-in plugin '{builtin}'; not registered: rename it"


def contested(label: str, others: str) -> str:
    return f"{label} is also registered by {others}, so none of them is used; leave all but one out with GANFORGE_PLUGINS or rename it"


@pytest.mark.parametrize("order", list(itertools.permutations(["losses", "dup", "dup-2"])), ids="-then-".join)
def test_a_builtin_wins_a_clash_whatever_order_the_registrations_come_in(order: tuple[str, ...]) -> None:
    registry = Registry(builtin={"losses"})
    offers = {plugin: offer(plugin) for plugin in order}
    for plugin in order:
        registry.add(offers[plugin])
    assert registry.get("loss", "hinge") is offers["losses"]
    assert registry.names("loss") == ["hinge"]
    assert [(p.plugin, p.reason) for p in registry.problems] == [
        ("dup", refused("loss 'hinge'", "losses")),
        ("dup-2", refused("loss 'hinge'", "losses")),
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(["one", "two", "three"])), ids="-then-".join)
def test_a_name_two_third_parties_register_goes_to_neither_whatever_the_order(order: tuple[str, ...]) -> None:
    registry = Registry(builtin={"losses"})
    for plugin in order:
        registry.add(offer(plugin, "shared"))
    registry.add(offer("one", "only-one"))
    assert registry.names("loss") == ["only-one"]
    assert [(p.plugin, p.reason) for p in registry.problems] == [
        ("one", contested("loss 'shared'", "plugins 'three' and 'two'")),
        ("three", contested("loss 'shared'", "plugins 'one' and 'two'")),
        ("two", contested("loss 'shared'", "plugins 'one' and 'three'")),
    ]
    with pytest.raises(ConfigError) as error:
        registry.get("loss", "shared")
    assert str(error.value) == (
        "loss 'shared' is registered by plugins 'one', 'three' and 'two', so none of them is used; "
        "leave all but one out with GANFORGE_PLUGINS (`ganforge plugins` lists them)"
    )


def test_a_plugin_that_registers_a_name_twice_keeps_its_first() -> None:
    registry = Registry()
    first, second = offer("twice"), offer("twice")
    registry.add(first)
    registry.add(second)
    assert registry.get("loss", "hinge") is first
    assert [str(p) for p in registry.problems] == ["plugin 'twice': loss 'hinge' is registered twice; kept the first"]


@pytest.mark.parametrize("trylast", [False, True], ids=["impostor-called-first", "impostor-called-last"])
def test_a_third_party_plugin_cannot_replace_a_builtin(trylast: bool) -> None:
    class Impostor:
        @hookimpl(trylast=trylast)
        def ganforge_register_losses(self, register):
            register("hinge", lambda o, ctx: SoftplusLoss(), summary="not the real hinge")
            register("dup-loss", lambda o, ctx: SoftplusLoss(), summary="its own name")

    plugins = Plugins(extra=[("dup", Impostor())])
    called = [impl.plugin_name for impl in reversed(plugins.hook.ganforge_register_losses.get_hookimpls())]
    assert called.index("dup") == (len(called) - 1 if trylast else 0), "the registration order under test"
    hinge = plugins.registry.get("loss", "hinge")
    assert hinge.plugin == "losses" and type(hinge.build(NoOptions(), None)) is HingeLoss
    assert plugins.registry.get("loss", "dup-loss").plugin == "dup"
    assert [str(p) for p in plugins.registry.problems] == [
        "plugin 'dup': loss 'hinge' is already provided by built-in plugin 'losses'; not registered: rename it"
    ]


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")], ids="-then-".join)
def test_a_name_two_third_party_plugins_register_is_refused_for_both(order: tuple[str, str]) -> None:
    makes = registers("ganforge_register_losses", "shared-loss")
    plugins = Plugins(extra=[(name, makes()) for name in order])
    assert "shared-loss" not in plugins.registry.names("loss")
    assert problems_of(plugins, "first") == [contested("loss 'shared-loss'", "plugin 'second'")]
    assert problems_of(plugins, "second") == [contested("loss 'shared-loss'", "plugin 'first'")]
    with pytest.raises(ConfigError, match="^loss 'shared-loss' is registered by plugins 'first' and 'second'"):
        plugins.registry.get("loss", "shared-loss")


# -- lifecycle hooks run in pluggy's order; hook wrappers are refused --------------------


def observer(log: list[str], label: str, failing: set[str] | None = None, **marks: bool) -> object:
    """A plugin whose ganforge_step_end appends ``label`` to ``log``, then raises while
    ``label`` is in ``failing``."""

    def ganforge_step_end(self, step):
        log.append(label)
        if label in (failing or ()):
            raise RuntimeError(f"{label} broke")

    return type(f"Observer_{label}", (), {"ganforge_step_end": hookimpl(**marks)(ganforge_step_end)})()


def test_lifecycle_hooks_run_tryfirst_first_trylast_last_and_otherwise_last_registered_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")  # only the observers below
    log: list[str] = []
    failing = {"plain-2"}
    order = [
        ("plain-1", {}),
        ("first-1", {"tryfirst": True}),
        ("last-1", {"trylast": True}),
        ("plain-2", {}),
        ("first-2", {"tryfirst": True}),
        ("last-2", {"trylast": True}),
        ("plain-3", {}),
    ]
    plugins = Plugins(extra=[(label, observer(log, label, failing, **marks)) for label, marks in order])
    errors: list[tuple[str, str]] = []
    plugins.call_each("ganforge_step_end", lambda plugin, exc: errors.append((plugin, str(exc))), run=None, step=1, stats={})
    # pluggy's order: tryfirst ones last registered first, then the plain ones last registered
    # first, then trylast ones in the order they were registered.
    expected = ["first-2", "first-1", "plain-3", "plain-2", "plain-1", "last-1", "last-2"]
    assert log == expected
    assert errors == [("plain-2", "plain-2 broke")], "the others still ran after plain-2 raised"
    log.clear()
    failing.clear()
    plugins.hook.ganforge_step_end(run=None, step=1, stats={})
    assert log == expected, "pluggy itself calls them in the same order"
    log.clear()
    plugins.call_each("ganforge_step_end", lambda plugin, exc: None, skip={"first-2", "plain-3"}, run=None, step=1, stats={})
    assert log == ["first-1", "plain-2", "plain-1", "last-1", "last-2"]


@pytest.mark.parametrize("marks", [{"wrapper": True}, {"hookwrapper": True}], ids=["wrapper", "hookwrapper"])
def test_a_hook_wrapper_is_refused_with_a_message_and_the_plugin_not_loaded(
    marks: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")
    log: list[str] = []

    class Wrapper:
        @hookimpl(**marks)
        def ganforge_step_end(self, step):
            log.append("wrapper")
            yield

        @hookimpl
        def ganforge_register_generators(self, register):
            register("wrapper-gen", lambda o, ctx: None, summary="never")

    plugins = Plugins(extra=[("wrapping", Wrapper()), ("plain", observer(log, "plain"))])
    assert problems_of(plugins, "wrapping") == [
        "ganforge_step_end is a hook wrapper, which ganforge does not support: it calls each implementation "
        "on its own, so that one plugin's error cannot stop another's; use a plain @hookimpl "
        "(tryfirst=True or trylast=True to run before or after the others); not loaded"
    ]
    assert plugins.registry.plugins == ["plain"]
    assert "wrapper-gen" not in plugins.registry.names("generator")
    plugins.call_each("ganforge_step_end", lambda plugin, exc: pytest.fail(f"{plugin}: {exc}"), run=None, step=1, stats={})
    plugins.hook.ganforge_step_end(run=None, step=1, stats={})
    assert log == ["plain", "plain"]


def test_same_plugin_name_twice_is_reported() -> None:
    plugins = Plugins(extra=[("twin", Generators()), ("twin", registers("ganforge_register_losses", "x-loss")())])
    assert any("twice" in reason for reason in problems_of(plugins, "twin"))
    assert ("generator", "extra-gen") in all_names(plugins)


def test_unknown_hook_is_reported_and_the_plugin_not_loaded() -> None:
    class Typo:
        @hookimpl
        def ganforge_register_generatorz(self, register):
            register("typo-gen", lambda o, ctx: None, summary="never")

        @hookimpl
        def ganforge_register_losses(self, register):
            register("typo-loss", lambda o, ctx: None, summary="never either")

    plugins = Plugins(extra=[("typo", Typo()), ("fine", Generators())])
    (reason,) = problems_of(plugins, "typo")
    assert "ganforge_register_generatorz" in reason and "not loaded" in reason
    assert "typo" not in plugins.registry.plugins
    assert not {("generator", "typo-gen"), ("loss", "typo-loss")} & all_names(plugins)
    assert ("generator", "extra-gen") in all_names(plugins)


def test_hook_with_a_wrong_argument_name_is_reported() -> None:
    class WrongArgument:
        @hookimpl
        def ganforge_register_generators(self, registry):
            registry("wrong-gen", lambda o, ctx: None, summary="never")

    plugins = Plugins(extra=[("wrong", WrongArgument())])
    assert len(problems_of(plugins, "wrong")) == 1
    assert ("generator", "wrong-gen") not in all_names(plugins)
    assert all_names(plugins) == all_names(Plugins())


def test_register_hook_that_raises_is_reported_and_others_still_work() -> None:
    class Raises:
        @hookimpl
        def ganforge_register_generators(self, register):
            raise RuntimeError("boom in register")

    plugins = Plugins(extra=[("raises", Raises()), ("fine", Generators())])
    (reason,) = problems_of(plugins, "raises")
    assert "ganforge_register_generators" in reason and "boom in register" in reason
    assert plugins.registry.get("generator", "extra-gen").plugin == "fine"
    assert {(c.kind, c.name) for c in BUILTIN.all()} <= all_names(plugins)


class PlainModel(BaseModel):
    size: int = 1


@pytest.mark.parametrize(
    ("name", "kwargs", "complaint"),
    [
        pytest.param("Bad_Name", {}, "lower-case", id="upper-case-and-underscore"),
        pytest.param("-leading-dash", {}, "lower-case", id="leading-dash"),
        pytest.param("has space", {}, "lower-case", id="space"),
        pytest.param("plain-options", {"options": PlainModel}, "Options", id="options-not-subclassing-Options"),
        pytest.param("dict-options", {"options": dict}, "Options", id="options-not-a-model"),
    ],
)
def test_invalid_component_is_reported_and_not_registered(name: str, kwargs: dict, complaint: str) -> None:
    plugin = registers("ganforge_register_generators", name, **kwargs)()
    plugins = Plugins(extra=[("sloppy", plugin), ("fine", Generators())])
    (reason,) = problems_of(plugins, "sloppy")
    assert complaint in reason and name in reason
    assert name not in plugins.registry.names("generator")
    assert "extra-gen" in plugins.registry.names("generator")


def test_factory_that_is_not_callable_is_reported() -> None:
    class NotCallable:
        @hookimpl
        def ganforge_register_datasets(self, register):
            register("not-callable", "just a string", summary="oops")

    plugins = Plugins(extra=[("sloppy", NotCallable())])
    (reason,) = problems_of(plugins, "sloppy")
    assert "not-callable" in reason
    assert "not-callable" not in plugins.registry.names("dataset")


# -- the allow-list ---------------------------------------------------------------------


def test_allow_list_loads_only_the_named_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "losses")
    plugins = Plugins()
    assert plugins.registry.plugins == ["losses"]
    assert {c.kind for c in plugins.registry.all()} == {"loss"}
    assert plugins.registry.names("loss") == sorted(c.name for c in BUILTIN.all() if c.kind == "loss" and c.plugin == "losses")
    assert "rpgan" in BUILTIN.names("loss") and "rpgan" not in plugins.registry.names("loss")  # r3gan's
    assert plugins.registry.problems == []


def test_allow_list_takes_several_names_with_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, " losses , mlp ")
    plugins = Plugins()
    assert sorted(plugins.registry.plugins) == ["losses", "mlp"]
    assert plugins.registry.names("generator") == ["mlp"]


def test_empty_allow_list_loads_no_entry_points_but_keeps_explicit_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")
    plugins = Plugins(extra=[("fine", Generators())])
    assert plugins.registry.plugins == ["fine"]
    assert all_names(plugins) == {("generator", "extra-gen")}


# -- entry points of a real (on-disk) distribution --------------------------------------

BROKEN_MODULE = "raise RuntimeError('broken on purpose at import')\n"
WORKING_MODULE = '''
from ganforge_core import hookimpl

@hookimpl
def ganforge_register_losses(register):
    register("disk-loss", lambda options, ctx: None, summary="from a distribution on disk")
'''


def make_distribution(root: Path, name: str, module: str, source: str) -> None:
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ganforge]\n{name} = {module}\n")
    (root / f"{module}.py").write_text(source)


@pytest.fixture(scope="module")
def site_with_plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("site")
    make_distribution(root, "broken-plugin", "broken_ganforge_plugin", BROKEN_MODULE)
    make_distribution(root, "disk-plugin", "disk_ganforge_plugin", WORKING_MODULE)
    env = {k: v for k, v in os.environ.items() if k != ALLOW_LIST_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


def ganforge(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ganforge_core", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=240, check=False,
    )


def test_entry_point_that_fails_to_import_is_reported_and_the_rest_load(
    site_with_plugins: dict[str, str], tmp_path: Path
) -> None:
    result = ganforge(site_with_plugins, tmp_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    (problem,) = [p for p in data["problems"] if p["plugin"] == "broken-plugin"]
    assert "import" in problem["reason"] and "broken on purpose at import" in problem["reason"]
    listed = {(c["kind"], c["name"]): p["name"] for p in data["plugins"] for c in p["components"]}
    assert {(c.kind, c.name) for c in BUILTIN.all()} <= set(listed)
    assert listed[("loss", "disk-loss")] == "disk-plugin"
    assert len(data["problems"]) == 1


def test_run_warns_about_a_broken_plugin_and_still_trains(site_with_plugins: dict[str, str], tmp_path: Path) -> None:
    result = ganforge(
        site_with_plugins, tmp_path, "run", "--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1",
        "--data", "ring-8:n=256", "--steps", "1", "--out", "run", "-q",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken-plugin" in warnings[0]
    assert (tmp_path / "run" / "config.json").exists()


def test_allow_list_applies_to_entry_points_on_disk(
    site_with_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(site_with_plugins["PYTHONPATH"].split(os.pathsep)[0])
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "disk-plugin,losses")
    plugins = Plugins()
    assert sorted(plugins.registry.plugins) == ["disk-plugin", "losses"]
    assert plugins.registry.get("loss", "disk-loss").plugin == "disk-plugin"
    assert plugins.registry.problems == [], "the broken plugin was imported although not allowed"
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "broken-plugin")
    (problem,) = Plugins().registry.problems
    assert problem.plugin == "broken-plugin" and "broken on purpose at import" in problem.reason


IMPOSTOR_MODULE = '''
from ganforge_core import hookimpl

def built(options, ctx):
    raise RuntimeError("the impostor hinge was built")

@hookimpl
def ganforge_register_losses(register):
    register("hinge", built, summary="an impostor")
    register("shared-loss", built, summary="also in dup-2")
'''
SECOND_MODULE = '''
from ganforge_core import hookimpl
from ganforge_losses.critics import HingeLoss

@hookimpl
def ganforge_register_losses(register):
    register("shared-loss", lambda options, ctx: HingeLoss(), summary="also in dup")
'''


@pytest.fixture(scope="module")
def site_with_impostors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Entry points named ``dup`` (before ``losses``, the order that let it win),
    ``dup-2`` and ``losses`` (a built-in plugin's name) from other distributions."""
    root = tmp_path_factory.mktemp("impostors")
    make_distribution(root, "dup", "dup_ganforge_plugin", IMPOSTOR_MODULE)
    make_distribution(root, "dup-2", "dup_2_ganforge_plugin", SECOND_MODULE)
    make_distribution(root, "fake-losses", "fake_losses_ganforge_plugin", IMPOSTOR_MODULE)
    (root / "fake_losses-0.1.dist-info" / "entry_points.txt").write_text("[ganforge]\nlosses = fake_losses_ganforge_plugin\n")
    env = {k: v for k, v in os.environ.items() if k != ALLOW_LIST_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


IMPOSTOR_WARNINGS = [
    "warning: plugin 'losses': is already the name of a built-in plugin; not loaded: rename it",
    "warning: plugin 'dup': loss 'hinge' is already provided by built-in plugin 'losses'; not registered: rename it",
    "warning: plugin 'dup': " + contested("loss 'shared-loss'", "plugin 'dup-2'"),
    "warning: plugin 'dup-2': " + contested("loss 'shared-loss'", "plugin 'dup'"),
]


def test_a_run_with_a_clashing_name_trains_with_the_builtin(site_with_impostors: dict[str, str], tmp_path: Path) -> None:
    result = ganforge(
        site_with_impostors, tmp_path, "run", "--gen", "mlp:hidden=8,depth=1", "--disc", "mlp:hidden=8,depth=1",
        "--loss", "hinge", "--data", "ring-8:n=256", "--steps", "1", "--out", "run", "-q",
    )
    assert result.returncode == 0, result.stderr[-2000:]  # the impostor's factory raises
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert sorted(warnings) == sorted(IMPOSTOR_WARNINGS)
    assert RunConfig.model_validate_json((tmp_path / "run" / "config.json").read_text()).loss.name == "hinge"


def test_a_name_two_third_parties_clash_on_is_one_error_line(site_with_impostors: dict[str, str], tmp_path: Path) -> None:
    result = ganforge(
        site_with_impostors, tmp_path, "run", "--gen", "mlp", "--disc", "mlp", "--loss", "shared-loss",
        "--data", "ring-8", "--steps", "1", "--out", "run", "-q",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [
        "error: loss 'shared-loss' is registered by plugins 'dup' and 'dup-2', so none of them is used; "
        "leave all but one out with GANFORGE_PLUGINS (`ganforge plugins` lists them)"
    ]
    assert not (tmp_path / "run").exists()


def test_builtins_are_told_apart_by_their_distribution(
    site_with_impostors: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(site_with_impostors["PYTHONPATH"].split(os.pathsep)[0])
    plugins = Plugins()
    assert plugins.builtin == set(BUILTIN.plugins)
    hinge = plugins.registry.get("loss", "hinge")
    assert hinge.plugin == "losses" and type(hinge.build(NoOptions(), None)) is HingeLoss
    assert sorted(f"warning: {p}" for p in plugins.registry.problems) == sorted(IMPOSTOR_WARNINGS)
    # The allow-list settles a clash between third parties: leave one of them out.
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "dup-2")
    alone = Plugins()
    assert alone.registry.get("loss", "shared-loss").plugin == "dup-2" and alone.registry.problems == []


# -- a plugin written to contract version 1 keeps working ------------------------------


class VersionOnePenalties:
    """Declares and refuses the trait 'gradient-penalty', which version 2 split in two."""

    @hookimpl
    def ganforge_register_losses(self, register):
        register("v1-gp-loss", lambda o, ctx: SoftplusLoss(), traits={"gradient-penalty"}, summary="old trait")

    @hookimpl
    def ganforge_register_regularizers(self, register):
        register(
            "v1-penalty", lambda o, ctx: Regularizer(), conflicts={"gradient-penalty": "one penalty"}, summary="old"
        )


def test_a_split_trait_is_read_as_its_replacements_with_one_warning_each() -> None:
    from ganforge_core import resolve
    from ganforge_core.errors import ConfigError

    plugins = Plugins(extra=[("v1", VersionOnePenalties())])
    assert problems_of(plugins, "v1") == [
        "loss 'v1-gp-loss' uses the trait 'gradient-penalty', which contract version 2 split into "
        "'input-gradient-penalty' and 'lipschitz-penalty'; it is read as both for now: name the one you mean",
        "regularizer 'v1-penalty' uses the trait 'gradient-penalty', which contract version 2 split into "
        "'input-gradient-penalty' and 'lipschitz-penalty'; it is read as both for now: name the one you mean",
    ]
    loss = plugins.registry.get("loss", "v1-gp-loss")
    assert loss.traits(loss.validate({})) == {"input-gradient-penalty", "lipschitz-penalty"}
    # What version 1 meant still holds: dcgan's norm=auto drops BatchNorm for the loss,
    plan = resolve(RunConfig(loss="v1-gp-loss"), plugins.registry)
    assert plan.discriminator.options.model_dump()["norm"] == "layer"
    # and the old conflict refuses what it refused before (r1 is an input-gradient penalty).
    with pytest.raises(ConfigError, match="regularizer 'v1-penalty' cannot be combined with regularizer 'r1'"):
        resolve(RunConfig(regularizers=["r1", "v1-penalty"]), plugins.registry)


COMMAND_MODULE = '''
import typer
from ganforge_core import ConfigError, hookimpl

@hookimpl
def ganforge_register_commands(cli):
    @cli.command()
    def greet(name: str) -> None:
        """Greet NAME (a plugin command)."""
        if not name.isalpha():
            raise ConfigError(f"a name is letters, not {name!r}")
        typer.echo(f"hello {name}")

    @cli.command("run")
    def impostor() -> None:
        typer.echo("impostor")
'''


def test_hook_ganforge_register_commands(tmp_path: Path) -> None:
    """An installed plugin's command runs from the real CLI; a built-in command's name stays the core's."""
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "cmd-plugin", "cmd_ganforge_plugin", COMMAND_MODULE)
    env = {k: v for k, v in os.environ.items() if k != ALLOW_LIST_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    warning = "warning: plugin 'cmd-plugin': command 'run' is taken by ganforge; not added"
    listing = ganforge(env, tmp_path, "--help")
    assert listing.returncode == 0 and listing.stderr.splitlines() == [warning], listing.stderr[-2000:]
    assert "Greet NAME (a plugin command)." in listing.stdout and "bench" in listing.stdout
    hello = ganforge(env, tmp_path, "greet", "ada")
    assert (hello.returncode, hello.stdout) == (0, "hello ada\n")
    bad = ganforge(env, tmp_path, "greet", "4da")
    assert (bad.returncode, bad.stderr.splitlines()) == (2, [warning, "error: a name is letters, not '4da'"])
    run_help = ganforge(env, tmp_path, "run", "--help")
    assert run_help.returncode == 0 and "Train a GAN" in run_help.stdout


# -- the meta-test --------------------------------------------------------------------

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("ganforge_"))


def test_hookspecs_are_found() -> None:
    assert "ganforge_register_generators" in HOOKS and "ganforge_train_end" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    """Like datasette's test_plugin_hooks_have_tests: a new hook needs a test_hook_<name> here."""
    tests = [name for name, value in globals().items() if name.startswith("test_hook_") and callable(value)]
    assert f"test_hook_{hook}" in tests, f"hook {hook} has no test_hook_{hook}"
