"""The health checks behind the ``monitors`` plugin, kept apart from the hooks.

Every check reads the averaged statistics of one logged interval (or, for the
sample checks, a small batch drawn from G: overall, and in conditional runs a few
samples of each class), from step ``Settings.warmup_steps`` on, and keeps its memory in a
:class:`State` stored on the run's context, never in module globals: several
runs may share a process. Each failure shape is reported at most once per run
context, through ``run.warn``, which prints the line and records it in
``metrics.jsonl`` as ``{"event": "warning"}``.

The sample check must not move the training random stream, or a resumed run
would stop being identical to an uninterrupted one: latents are drawn inside
``torch.random.fork_rng``, G runs in eval mode under ``torch.no_grad()``, and
its train/eval flag is restored afterwards.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

KEY = "ganforge_monitors"
"""Where a run's monitor state lives in ``run.extra``."""


@dataclass(frozen=True)
class Settings:
    """Thresholds of the checks. Patience is counted in logged intervals."""

    warmup_steps: int = 50
    """No check before this step: fresh networks look unhealthy (G's BatchNorm running statistics,
    which its eval-mode samples use, start at 0 and 1, so early samples can be near-identical)."""
    d_wins_loss: float = 0.05
    """``loss/d`` below this counts as D winning (losses that are not Wasserstein)."""
    d_wins_intervals: int = 10
    """The window of logged intervals judged for D winning."""
    d_wins_share: float = 0.8
    """Share of the window in which D must be winning (``loss/d`` is noisy), while ``loss/g`` rose."""
    frozen_rtol: float = 1e-7
    """Relative change of ``loss/d`` and ``loss/g`` below which an interval counts as frozen."""
    frozen_intervals: int = 20
    """Consecutive frozen intervals before a warning."""
    sample_every: int = 10
    """Draw samples at the first logged interval of a run, then every this many intervals (at the
    default --log-every 50: steps 50, 500, 1000, ...)."""
    sample_size: int = 64
    """Samples drawn for the spread check."""
    collapse_ratio: float = 1e-3
    """Mean per-feature std of samples below this fraction of the data's: identical samples."""
    class_samples: int = 8
    """Conditional runs: samples drawn per class for the per-class spread check."""
    class_budget: int = 512
    """Conditional runs: at most this many samples per check; with more classes, a random subset is checked."""
    class_collapse_ratio: float = 0.2
    """Conditional runs: a class whose samples' mean per-feature std is below this fraction of the real
    class's has collapsed (issue 17's collapsed dcgan runs: 0.07-0.09 at step 300; varied ones: 0.77-0.88)."""


@dataclass
class State:
    """What the checks remember about one run."""

    settings: Settings
    check_d_wins: bool = True
    warned: set[str] = field(default_factory=set)
    intervals: int = 0
    recent: deque[tuple[int, float, float]] = field(default_factory=deque)  # (step, loss/d, loss/g)
    frozen_streak: int = 0
    frozen_since: int = 0
    last: tuple[float, float] | None = None
    data_spread: float | None = None
    data_measured: bool = False  # data_spread and class_spreads are measured at the first sample check
    class_spreads: dict[int, float] = field(default_factory=dict)  # the real classes' spreads
    stopped: bool = False


# -- the hooks' bodies ------------------------------------------------------------


def start(run: Any, settings: Settings) -> State:
    """A fresh state for this run (also on resume), stored in ``run.extra``."""
    state = State(settings=settings, check_d_wins=_d_wins_applies(run))
    run.extra[KEY] = state
    return state


def _measure_data(run: Any, state: State) -> None:
    """The real data's spreads, once, at the first sample check: not at the start, where reading
    samples would delay the first step (a streamed run reads no data before its first batch)."""
    if state.data_measured:
        return
    state.data_measured = True
    state.data_spread = _data_spread(run)
    if _conditional(run):
        state.class_spreads = _data_class_spreads(run)


def observe(run: Any, step: int, stats: dict[str, float], settings: Settings) -> None:
    """Run every check on one logged interval; a check that fails turns monitoring off, with a note."""
    state = run.extra.get(KEY)
    if isinstance(state, State) and state.stopped:
        return
    try:
        if not isinstance(state, State):  # train_start was not seen (a hook called on its own)
            state = start(run, settings)
        if step < state.settings.warmup_steps:
            return
        state.intervals += 1
        d, g = stats.get("loss/d"), stats.get("loss/g")
        if d is not None and g is not None and math.isfinite(d) and math.isfinite(g):
            _d_wins(run, state, step, d, g)
            _frozen(run, state, step, d, g)
        else:
            state.recent.clear()
            state.frozen_streak = 0
            state.last = None
        every = max(1, state.settings.sample_every)
        if state.intervals == 1 or state.intervals % every == 0:
            _measure_data(run, state)
            if "collapse" not in state.warned:
                _collapse(run, state, step)
            if state.class_spreads and not state.warned & {"collapse", "class-collapse"}:
                _class_collapse(run, state, step)
    except Exception as exc:  # noqa: BLE001 - a monitor must never end a run
        if not isinstance(state, State):
            state = run.extra[KEY] = State(settings=settings)
        state.stopped = True
        run.warn(f"monitors: a check failed at step {step} ({exc!r}); health monitoring is off for this run")


# -- the checks -------------------------------------------------------------------


def _d_wins(run: Any, state: State, step: int, d: float, g: float) -> None:
    s = state.settings
    if not state.check_d_wins or "d-wins" in state.warned:
        return
    window = max(2, s.d_wins_intervals)
    state.recent.append((step, d, g))
    while len(state.recent) > window:
        state.recent.popleft()
    if len(state.recent) < window:
        return
    winning = sum(1 for _, loss_d, _ in state.recent if loss_d < s.d_wins_loss)
    g_values = [loss_g for _, _, loss_g in state.recent]
    half = window // 2
    early, late = sum(g_values[:half]) / half, sum(g_values[-half:]) / half
    if winning >= s.d_wins_share * window and late > early:
        since = state.recent[0][0]
        _warn(
            run,
            state,
            "d-wins",
            f"D is winning: loss/d was below {s.d_wins_loss:g} in {winning} of the last {window} logged "
            f"intervals (steps {since}-{step}) while loss/g rose from {early:.3g} to {late:.3g} on average, "
            "so G gets little useful gradient. Try: lower --lr-d or raise --lr-g, --reg instance-noise or "
            "--reg label-smoothing, --reg spectral-norm, or a smaller discriminator",
        )


def _frozen(run: Any, state: State, step: int, d: float, g: float) -> None:
    s = state.settings
    last, state.last = state.last, (d, g)
    if "frozen" in state.warned:
        return
    if last is None or not (_same(d, last[0], s.frozen_rtol) and _same(g, last[1], s.frozen_rtol)):
        state.frozen_streak = 0
        return
    if state.frozen_streak == 0:
        state.frozen_since = step
    state.frozen_streak += 1
    if state.frozen_streak >= s.frozen_intervals:
        _warn(
            run,
            state,
            "frozen",
            f"training has stalled: loss/d ({d:.6g}) and loss/g ({g:.6g}) have not changed for "
            f"{state.frozen_streak} logged intervals (since step {state.frozen_since}); the networks' "
            "outputs no longer depend on their inputs (dead ReLUs, saturated units) or the learning "
            "rates are ~0. Try: lower learning rates, --reg spectral-norm, leaky-relu activations, and "
            "check that the data varies",
        )


def _collapse(run: Any, state: State, step: int) -> None:
    spread = sample_spread(run, state.settings.sample_size)
    reference = state.data_spread or 1.0
    if spread < state.settings.collapse_ratio * reference or spread == 0.0:
        _warn(
            run,
            state,
            "collapse",
            f"mode collapse: {state.settings.sample_size} samples from G at step {step} are (almost) "
            f"identical (mean per-feature std {spread:.3g}, the data's {reference:.3g}); G ignores its "
            "latent input. Try: lower --lr-g, --loss wgan-gp, --reg instance-noise, a larger z_dim, "
            "or restart from an earlier checkpoint",
        )


def _class_collapse(run: Any, state: State, step: int) -> None:
    """Conditional runs: a class whose samples are (almost) one image, though the samples overall vary."""
    s = state.settings
    classes = list(state.class_spreads)
    per_class = max(2, s.class_samples)
    spreads = class_sample_spreads(run, classes, per_class, max(1, s.class_budget // per_class))
    collapsed = {
        c: spread for c, spread in spreads.items() if spread < s.class_collapse_ratio * state.class_spreads[c]
    }
    if not collapsed:
        return
    names = _class_names(run)
    worst = min(collapsed, key=collapsed.__getitem__)
    listed = ", ".join(names.get(c, str(c)) for c in sorted(collapsed))
    _warn(
        run,
        state,
        "class-collapse",
        f"class collapse: the samples of class {listed} at step {step} are (almost) one image per class "
        f"({per_class} samples of class {names.get(worst, str(worst))}: mean per-feature std "
        f"{collapsed[worst]:.3g}, that real class's {state.class_spreads[worst]:.3g}), though the samples "
        "vary across classes; G ignores its latent input given the label. Try: a generator with "
        "class-conditional BatchNorm and a projection D (dcgan, resnet), lower --lr-g, --reg diffaugment, "
        "or restart from an earlier checkpoint",
    )


def _warn(run: Any, state: State, key: str, text: str) -> None:
    state.warned.add(key)
    run.warn(f"monitors: {text}")


def _same(a: float, b: float, rtol: float) -> bool:
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


# -- helpers ----------------------------------------------------------------------


def sample_spread(run: Any, n: int) -> float:
    """Mean over features of the std across ``n`` samples of G, leaving every RNG stream as it was."""
    import torch

    generator = run.generator
    device = getattr(run, "device", torch.device("cpu"))
    devices = [device] if device.type == "cuda" else []
    was_training = generator.training
    conditional = _conditional(run)
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        generator.eval()
        try:
            latents = torch.randn(n, int(generator.z_dim), device=device)
            if conditional:  # G(z, labels): spread within random classes still shows collapse
                labels = torch.randint(int(run.dataset.num_classes), (n,), device=device)
                samples = generator(latents, labels)
            else:
                samples = generator(latents)
            samples = samples.float().flatten(1)
        finally:
            generator.train(was_training)
    return float(samples.std(dim=0).mean().item())


def class_sample_spreads(run: Any, classes: list[int], per_class: int, most: int) -> dict[int, float]:
    """Per class: the mean per-feature std of ``per_class`` samples of G given that label.

    At most ``most`` classes, a random subset when there are more; every RNG stream is left as it was.
    """
    import torch

    generator = run.generator
    device = getattr(run, "device", torch.device("cpu"))
    devices = [device] if device.type == "cuda" else []
    was_training = generator.training
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if len(classes) > most:
            classes = [classes[i] for i in torch.randperm(len(classes))[:most].tolist()]
        generator.eval()
        try:
            labels = torch.tensor(classes, device=device).repeat_interleave(per_class)
            latents = torch.randn(len(labels), int(generator.z_dim), device=device)
            samples = generator(latents, labels).float().flatten(1).view(len(classes), per_class, -1)
        finally:
            generator.train(was_training)
    spreads = samples.std(dim=1).mean(dim=1)
    return {c: float(value) for c, value in zip(classes, spreads.tolist(), strict=True)}


def _conditional(run: Any) -> bool:
    return bool(getattr(getattr(run, "config", None), "conditional", False))


def _data_class_spreads(run: Any) -> dict[int, float]:
    """Per class with at least 2 real samples: the mean per-feature std of (up to 256 of) them."""
    dataset = getattr(run, "dataset", None)
    labels = getattr(dataset, "labels", None)
    if dataset is None or labels is None:
        return {}
    spreads = {}
    for c in range(int(dataset.num_classes)):
        index = (labels == c).nonzero().flatten()[:256]
        if len(index) >= 2:
            rows = dataset.take(index)  # float32 in the model's scale, like G's samples
            spreads[c] = float(rows.flatten(1).std(dim=0).mean().item())
    return spreads


def _class_names(run: Any) -> dict[int, str]:
    """Class index -> "3" or, where the dataset names its classes (``info['classes']``), "3 ('cat')"."""
    names = (getattr(getattr(run, "dataset", None), "info", None) or {}).get("classes")
    if not isinstance(names, list | tuple):
        return {}
    return {i: f"{i} ({name!r})" for i, name in enumerate(names)}


def _data_spread(run: Any) -> float | None:
    """Mean per-feature std of (up to 1,024 of) the real samples: the scale for the sample check."""
    dataset = getattr(run, "dataset", None)
    if dataset is None or len(dataset) < 2:
        return None
    samples = dataset.take(range(min(1024, len(dataset))))  # float32 in the model's scale, like G's samples
    return float(samples.flatten(1).std(dim=0).mean().item())


def _d_wins_applies(run: Any) -> bool:
    """Only where ``loss/d`` near zero means D wins: any known loss that is not Wasserstein.

    A Wasserstein critic's loss is a difference of means plus penalties, which passes
    through zero in healthy runs. A loss this process cannot look up is skipped.
    """
    try:
        from ganforge_core import get_registry

        choice = run.config.loss
        component = get_registry().get("loss", choice.name)
        traits = component.traits(component.validate(choice.options))
    except Exception:  # noqa: BLE001 - an unknown loss: do not guess
        return False
    return "wasserstein" not in traits
