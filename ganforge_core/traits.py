"""Every trait the built-in components use, with one meaning each, and who reads it.

A trait is a fact a component declares about itself (``register(traits=...)``),
that a dataset must have (``requires=``) or that another chosen component must not
have (``conflicts=``). :data:`TRAITS` says what each one means and which code reads
it; :func:`uses` finds, in a registry, who declares, requires and refuses it;
:func:`markdown` renders both as docs/traits.md (``ganforge docs traits >
docs/traits.md``), and tests/test_traits.py keeps the page, the table and the
registry in step. A third-party plugin may declare traits of its own; reuse one of
these where the meaning is the same, so the checks that read it apply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from ganforge_core.components import KINDS, Options
from ganforge_core.errors import ConfigError
from ganforge_core.registry import Component, Registry


@dataclass(frozen=True)
class Trait:
    """One trait: what it means when declared, and the code (besides ``requires``/``conflicts``) that reads it."""

    meaning: str
    read_by: str = ""


TRAITS: dict[str, Trait] = {
    # -- datasets ----------------------------------------------------------------------
    "image": Trait(
        "samples are images `[C, H, W]` in `[-1, 1]`",
        "`ganforge_core.testing.check_dataset` (a dataset is exactly one of image, vector)",
    ),
    "vector": Trait(
        "samples are flat vectors `[D]`",
        "`ganforge_core.testing.check_dataset` (a dataset is exactly one of image, vector)",
    ),
    "labelled": Trait(
        "the dataset has an integer class label per sample",
        "`--conditional` refuses a dataset without it (`config`); `ganforge_core.testing.check_dataset`",
    ),
    "digits": Trait("every channel of a sample is one MNIST-style digit"),
    "stacked-digits": Trait("a sample is three digits stacked as its channels (Stacked MNIST)"),
    "gaussian-mixture": Trait("samples come from a known Gaussian mixture whose centres the dataset's `info` gives"),
    # -- networks ----------------------------------------------------------------------
    "label-conditioning": Trait(
        "the network takes class labels: `G(z, labels)`, `D(x, labels=labels)`",
        "`--conditional` refuses networks without it (`config`); `ganforge_core.testing` checks that labels "
        "change the output",
    ),
    "batchnorm-in-g": Trait(
        "G has BatchNorm, which couples the samples of a batch",
        "`--batch-size 1` is refused (`config`); `ganforge_core.testing` checks the declaration against the module",
    ),
    "batchnorm-in-d": Trait(
        "D has BatchNorm, which couples the samples of a batch",
        "`--batch-size 1` is refused (`config`); `ganforge_core.testing` checks the declaration against the module",
    ),
    "per-sample": Trait(
        "D scores each sample of a batch on its own and its forward pass changes no state (no BatchNorm, "
        "minibatch standard deviation, dropout or spectral norm, whose power iteration runs at each call): "
        "`D(cat(a, b))` is `cat(D(a), D(b))`",
        "`ganforge_core.engine` scores D main's real and fake batches in one call of D (one pass instead of "
        "two: fewer, larger operations); `ganforge_core.testing.check_component` checks the declaration "
        "against the module (one call on two halves equals two calls, and leaves every buffer as it was)",
    ),
    "growing": Trait(
        "the network's architecture follows the run's progress (progressive growing): it implements "
        "`grow(step, total_steps)` (`ganforge_core.Growing`)",
        "`ganforge_core.engine` grows G and D before each step and captures a CUDA graph again when their "
        "form changes; `ganforge_core.trained` grows the sampling generator to its step; "
        "`ganforge_core.testing.check_component` checks `grow` at several steps and that every parameter gets "
        "a gradient at each (0 for stages not in use), which DDP waits for under torchrun",
    ),
    "truncation": Trait(
        "G has the truncation trick at sampling time: a float attribute `truncation_psi` that its eval-mode "
        "forward reads (1: no truncation, 0: every latent gives the average image)",
        "`ganforge sample --truncation PSI` refuses generators without it and sets it on the sampling generator "
        "(`ganforge_core.trained`); `ganforge_core.testing.check_component` checks the attribute exists and "
        "that psi 0 gives one image for every latent",
    ),
    # -- schedules ---------------------------------------------------------------------
    "beta2-schedule": Trait(
        "the schedule changes Adam's beta2 over the run (`Schedule.adam_beta2`)",
        "`ganforge_core.engine` sets both optimizers' beta2 from it before each step (only for a schedule with "
        "this trait); `fastpath` trains such a run eagerly (a captured CUDA graph would freeze beta2); "
        "`ganforge_core.testing.check_component` checks that a schedule without it keeps the run's beta2",
    ),
    # -- losses ------------------------------------------------------------------------
    "targets": Trait(
        "the loss scores logits against `ctx.targets`, so label smoothing acts on it",
        "nothing checks it (label-smoothing refuses `wasserstein`, `margin` and `pairing` instead); informational",
    ),
    "relativistic": Trait("each side's logits are judged against the other side's mean logit", "nothing; informational"),
    "wasserstein": Trait(
        "an unbounded critic whose loss is a difference of means (no targets)",
        "the `monitors` plugin skips its D-wins check (such a loss passes through 0 in healthy runs)",
    ),
    "margin": Trait("fixed hinge margins instead of targets"),
    "pairing": Trait(
        "each real logit is scored against a paired fake one, as a difference (relativistic pairing), with no targets",
        "`label-smoothing` refuses it (nothing to smooth)",
    ),
    "weight-clipping": Trait("the loss clips D's weights after every D step", "nothing; informational"),
    # -- penalties ---------------------------------------------------------------------
    "input-gradient-penalty": Trait(
        "the component penalises D's gradient with respect to each input sample, so D must not couple the "
        "samples of a batch (the penalties refuse `batchnorm-in-d`); it also declares the batch the penalty is "
        "computed on: `penalty-on-real`, `penalty-on-fake` or both",
        "dcgan D's `norm=auto` picks LayerNorm instead of BatchNorm (from `ResolveContext.loss_traits` and "
        "`regularizer_traits`); `ganforge_core.testing` requires the batch declared",
    ),
    "penalty-on-real": Trait(
        "the input-gradient penalty is computed on the real batch (R1); with `penalty-on-fake` as well, on both "
        "or between them (WGAN-GP's interpolates)",
        "`ganforge_core.testing.check_component` checks that the penalty changes with exactly the batches declared",
    ),
    "penalty-on-fake": Trait(
        "the input-gradient penalty is computed on the fake batch (R2); with `penalty-on-real` as well, on both "
        "or between them",
        "`ganforge_core.testing.check_component` checks that the penalty changes with exactly the batches declared",
    ),
    "lipschitz-penalty": Trait(
        "a penalty pulls ‖∇D‖ toward 1 (one-sided: to at most 1) between real and fake samples, a soft "
        "1-Lipschitz bound; zero-centred penalties (R1, R2) pull it toward 0 instead"
    ),
    # -- regularizers ------------------------------------------------------------------
    "spectral-norm": Trait("D's weights are spectrally normalised, which bounds its Lipschitz constant"),
    "ema": Trait("an exponential moving average of G is kept for samples and metrics", "nothing; informational"),
    "stochastic": Trait(
        "the component draws fresh random numbers every step (noise, augmentation)", "nothing; informational"
    ),
    "packing": Trait(
        "D judges several samples concatenated into one input",
        "`config`: the resolved regularizers list it last, so every other D-input transform sees single samples",
    ),
    # -- the training step -------------------------------------------------------------
    "graph-safe": Trait(
        "the component's per-step work depends on tensors alone (not on the step number read on the host), "
        "so a captured CUDA graph may replay it",
        "`ganforge_core.fastpath`: the CUDA graph is used only when the loss and every regularizer declare it",
    ),
    # -- metrics -----------------------------------------------------------------------
    "opt-in": Trait(
        "the metric runs only when named (slow, or needs files), never as a default metric",
        "`config`: a run's default metrics leave it out (it must be declared statically)",
    ),
    # -- the run -----------------------------------------------------------------------
    "conditional": Trait(
        "a `conflicts` key, never declared: the run is class-conditional (`--conditional`)",
        "`config`: a component that lists it is refused in conditional runs",
    ),
}


@dataclass
class Uses:
    """Who, in one registry, declares a trait, requires it of the dataset, and refuses it."""

    declared_by: list[str] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)
    refused_by: list[str] = field(default_factory=list)


def _variations(options: type[Options]) -> Iterator[dict[str, Any]]:
    """The default options, then each ``Literal`` field at each of its values, each bool flipped, and each
    field at each of its ``examples`` (``Field(examples=[...])``: how an optional number shows its traits)."""
    yield {}
    for name, info in options.model_fields.items():
        for example in info.examples or ():
            yield {name: example}
        if get_origin(info.annotation) is Literal:
            for value in get_args(info.annotation):
                yield {name: value}
        elif info.annotation is bool and isinstance(info.default, bool):
            yield {name: not info.default}


def declared_traits(component: Component) -> frozenset[str]:
    """Every trait the component declares, under its default options and their variations.

    Traits given as a function of the options are evaluated on the defaults, on each
    value of every ``Literal`` field, with every bool flipped and at each field's
    ``examples`` (options that fail to validate alone are skipped): that finds
    ``dcgan``'s ``batchnorm-in-d`` under ``norm=batch``, the ``graph-safe`` that
    annealing takes away and the ``beta2-schedule`` of ``cosine:beta2_from=0.9``.
    """
    if not callable(component.trait_spec):
        return frozenset(component.trait_spec)
    found: set[str] = set()
    for raw in _variations(component.options):
        try:
            found |= component.traits(component.validate(raw))
        except ConfigError:
            continue
    return frozenset(found)


def uses(registry: Registry) -> dict[str, Uses]:
    """Every trait name any component of ``registry`` declares, requires or refuses, with who does."""
    found: dict[str, Uses] = {}
    for component in registry.all():
        for trait in sorted(declared_traits(component)):
            found.setdefault(trait, Uses()).declared_by.append(component.label)
        for trait in sorted(component.requires):
            found.setdefault(trait, Uses()).required_by.append(component.label)
        for trait in sorted(component.conflicts):
            found.setdefault(trait, Uses()).refused_by.append(component.label)
    return found


HEADER = """# Traits

A trait is a fact a component declares about itself (`register(traits=...)`), that
a dataset must have (`requires=`), or that no other chosen component may have
(`conflicts=`); the core refuses a run whose components do not fit, before it
trains. Each trait below has one meaning. The table is generated from
`ganforge_core.traits.TRAITS` and the built-in registry
(`ganforge docs traits > docs/traits.md`), and a test fails when the
page, the table or the components drift apart. A plugin may declare traits of its
own; reuse one of these where the meaning is the same, so the checks that read it
apply to the plugin's component too.

"""


def _who(labels: list[str]) -> str:
    order: dict[str, int] = {kind: i for i, kind in enumerate(KINDS)}
    return "<br>".join(sorted(labels, key=lambda label: (order[label.split(" ")[0]], label))) or "-"


def markdown(registry: Registry) -> str:
    """docs/traits.md: every trait of :data:`TRAITS` with its meaning, its users in ``registry`` and its readers."""
    found = uses(registry)
    lines = [
        "| trait | meaning | declared by | required of the dataset by | refused by | also read by |",
        "|---|---|---|---|---|---|",
    ]
    for name, trait in TRAITS.items():
        use = found.get(name, Uses())
        cells = [f"`{name}`", trait.meaning, _who(use.declared_by), _who(use.required_by), _who(use.refused_by)]
        lines.append("| " + " | ".join([*cells, trait.read_by or "-"]) + " |")
    return HEADER + "\n".join(lines) + "\n"


def builtin_registry() -> Registry:
    """The registry of ganforge's own plugins only (the entry points of the ``ganforge`` distribution)."""
    from importlib.metadata import distribution

    from ganforge_core.plugins import ALLOW_LIST_VARIABLE, ENTRY_POINT_GROUP, Plugins

    names = [ep.name for ep in distribution("ganforge").entry_points if ep.group == ENTRY_POINT_GROUP]
    saved = os.environ.get(ALLOW_LIST_VARIABLE)
    os.environ[ALLOW_LIST_VARIABLE] = ",".join(names)
    try:
        return Plugins().registry
    finally:
        if saved is None:
            del os.environ[ALLOW_LIST_VARIABLE]
        else:
            os.environ[ALLOW_LIST_VARIABLE] = saved
