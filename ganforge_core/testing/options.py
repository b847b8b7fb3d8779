"""The registration and options contract of any component."""

from __future__ import annotations

import json

from ganforge_core.components import KINDS, Options, ScheduleOptions
from ganforge_core.errors import ConfigError
from ganforge_core.registry import NAME_PATTERN, Component
from ganforge_core.testing.gradients import declared_batches
from ganforge_core.testing.objects import MODALITIES, _check, _fail


def check_options(component: Component) -> None:
    """The registration and options contract that ``ganforge plugins``, the CLI and config files rely on."""
    label = component.label
    _check(NAME_PATTERN.match(component.name), f"{label}: names are lower-case letters, digits and '-'")
    _check(component.kind in KINDS, f"{label}: unknown kind; kinds are {', '.join(KINDS)}")
    _check(component.summary.strip(), f"{label}: register(..., summary=...) is empty")
    options = component.options
    _check(
        isinstance(options, type) and issubclass(options, Options),
        f"{label}: options={options!r} must subclass ganforge_core.Options",
    )
    _check(
        options.model_config.get("extra") == "forbid",
        f"{label}: options model {options.__name__} must forbid unknown keys (model_config extra='forbid')",
    )
    try:
        component.validate({"no_such_option_xyz": 1})
    except ConfigError as exc:
        _check("unknown option 'no_such_option_xyz'" in str(exc), f"{label}: an unknown option gave: {exc}")
    else:
        raise _fail(f"{label}: an unknown option 'no_such_option_xyz' was accepted")
    undescribed = [name for name, field in options.model_fields.items() if not (field.description or "").strip()]
    _check(not undescribed, f"{label}: options without Field(description=...): {', '.join(undescribed)}")
    try:
        defaults = component.validate({})
    except ConfigError as exc:
        raise _fail(f"{label}: its default options do not validate: {exc}") from None
    _check(isinstance(defaults, options), f"{label}: validate() did not return a {options.__name__}")
    # config.json must rerun the same run: defaults survive a JSON round trip.
    dumped = json.loads(json.dumps(defaults.model_dump(mode="json")))
    _check(
        component.validate(dumped) == defaults,
        f"{label}: default options change through JSON: {defaults!r} -> {dumped!r}",
    )
    traits = component.traits(defaults)
    for what, values in (("requires", component.requires), ("traits", traits)):
        bad = [t for t in values if not (isinstance(t, str) and t)]
        _check(not bad, f"{label}: {what} must be non-empty strings, got {bad!r}")
    _check(
        "input-gradient-penalty" not in traits or declared_batches(traits),
        f"{label}: declares input-gradient-penalty but not the batch its penalty is computed on: add the trait "
        "penalty-on-real (R1), penalty-on-fake (R2), or both (both batches, or between them as WGAN-GP's)",
    )
    if component.kind == "scheduler":
        _check(issubclass(options, ScheduleOptions), f"{label}: a schedule's options subclass ScheduleOptions")
    if component.kind == "dataset":
        modalities = traits & set(MODALITIES)
        _check(len(modalities) == 1, f"{label}: a dataset has exactly one of the traits image, vector: {traits}")
