"""The kinds of component, written once as data.

Each row says what a kind is: the registration hook a plugin implements, what
the factory returns, the :class:`~ganforge_core.config.RunConfig` field that
chooses it, how many a run takes, its default, and the contract check in
:mod:`ganforge_core.testing`. The plugin manager, the registry, the catalogue
(``ganforge plugins``, ``docs/components.md``), the contract checks and the hook
reference derive from this table, and a meta-test holds ``hookspecs.py`` to it.

Adding a kind: its name in ``components.Kind`` and a row here, its hook in
``hookspecs.py``, its protocol in ``components.py``, its check in
``testing.COMPONENT_CHECKS``, then the place in the core that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ganforge_core.components import KINDS, Kind

Cardinality = Literal["one", "optional", "many"]


@dataclass(frozen=True)
class KindSpec:
    """One kind of component."""

    name: Kind
    plural: str
    hook: str
    builds: str  # what the factory returns (a protocol of ganforge_core.components, or torch's nn.Module)
    field: str  # the RunConfig field that chooses it
    cardinality: Cardinality  # one: exactly one; optional: one or derived; many: a list
    default: str  # what a run takes when the user says nothing
    check: str  # the function of ganforge_core.testing that checks a built one
    factory_context: str = "BuildContext"  # the second argument of factory(options, ctx)


TABLE: tuple[KindSpec, ...] = (
    KindSpec("generator", "generators", "ganforge_register_generators", "nn.Module", "generator", "one",
             "dcgan", "check_generator"),
    KindSpec("discriminator", "discriminators", "ganforge_register_discriminators", "nn.Module", "discriminator",
             "optional", "the one named like the generator", "check_discriminator"),
    KindSpec("loss", "losses", "ganforge_register_losses", "Loss", "loss", "one", "non-saturating", "check_loss"),
    KindSpec("regularizer", "regularizers", "ganforge_register_regularizers", "Regularizer", "regularizers",
             "many", "none", "check_regularizer"),
    KindSpec("scheduler", "schedulers", "ganforge_register_schedulers", "Schedule", "scheduler", "one",
             "constant", "check_schedule"),
    KindSpec("dataset", "datasets", "ganforge_register_datasets", "Dataset", "dataset", "one", "mnist-5k",
             "check_dataset"),
    KindSpec("metric", "metrics", "ganforge_register_metrics", "Metric", "metrics", "many",
             "every metric the dataset supports, except opt-in ones", "check_metric"),
    KindSpec("logger", "loggers", "ganforge_register_loggers", "Logger", "loggers", "many",
             "none (metrics.jsonl is always written)", "check_logger", factory_context="RunContext"),
)

BY_NAME: dict[str, KindSpec] = {spec.name: spec for spec in TABLE}
REGISTER_HOOKS: dict[Kind, str] = {spec.name: spec.hook for spec in TABLE}

if tuple(spec.name for spec in TABLE) != KINDS:
    raise RuntimeError("ganforge_core.kinds.TABLE must list every Kind, in KINDS' order")
