"""Name -> component, for every kind. The core owns it, so clashes are caught here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from ganforge_core.components import KINDS, Kind, NoOptions, Options, Recommendation, Renderer, ResolveContext
from ganforge_core.errors import ConfigError, did_you_mean, one_of

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Register(Protocol):
    """The callback a registration hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[Options] = NoOptions,
        summary: str = "",
        traits: Iterable[str] | Callable[[Any], Iterable[str]] = (),
        requires: Iterable[str] = (),
        conflicts: Mapping[str, str] | None = None,
        recommends: Recommendation | None = None,
        paper: str = "",
        needs: Iterable[str] = (),
        render: Renderer | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class Component:
    """A registered component: a name, a typed options model and a factory.

    ``traits`` are facts the core checks before training (``"image"``,
    ``"wasserstein"``, ``"batchnorm-in-d"``...); they may depend on the options.
    ``requires`` lists traits the dataset must have. ``conflicts`` maps a trait
    of any other chosen component to the reason the two cannot be combined.
    ``needs`` names Python packages the component imports when built (checked,
    with a ``pip install`` hint, before training). ``render`` (datasets) draws the
    dataset's samples into a picture; without one the core picks a default.
    """

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type[Options]
    plugin: str
    summary: str = ""
    trait_spec: Iterable[str] | Callable[[Any], Iterable[str]] = ()
    requires: frozenset[str] = frozenset()
    conflicts: Mapping[str, str] = field(default_factory=dict)
    recommends: Recommendation | None = None
    paper: str = ""
    needs: tuple[str, ...] = ()
    render: Renderer | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    def traits(self, options: Options) -> frozenset[str]:
        spec = self.trait_spec
        return frozenset(spec(options) if callable(spec) else spec)

    def validate(self, raw: Mapping[str, Any], context: ResolveContext | None = None) -> Options:
        """Validate user options, raising a one-line :class:`ConfigError`."""
        try:
            return self.options.model_validate(dict(raw), context={"resolve": context or ResolveContext()})
        except ValidationError as exc:
            raise ConfigError(self._explain(exc)) from None

    def build(self, options: Options, ctx: Any) -> Any:
        return self.factory(options, ctx)

    def _explain(self, exc: ValidationError) -> str:
        fields = self.options.model_fields
        valid = one_of(fields)
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "options"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown option '{where}'{did_you_mean(where, fields)}")
            else:
                problems.append(f"option '{where}': {error['msg']} (got {error.get('input')!r})")
        return f"{self.label}: {'; '.join(problems)}; valid options: {valid}"


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded or registered something invalid."""

    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}': {self.reason}"


class Registry:
    """Every component of every kind, plus the problems met while collecting them."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self.problems: list[PluginProblem] = []
        self.plugins: list[str] = []

    def registrar(self, kind: Kind, plugin: str) -> Register:
        """The ``register`` callback handed to one plugin's hook for one kind."""

        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            options: type[Options] = NoOptions,
            summary: str = "",
            traits: Iterable[str] | Callable[[Any], Iterable[str]] = (),
            requires: Iterable[str] = (),
            conflicts: Mapping[str, str] | None = None,
            recommends: Recommendation | None = None,
            paper: str = "",
            needs: Iterable[str] = (),
            render: Renderer | None = None,
        ) -> None:
            self.add(
                Component(
                    kind=kind,
                    name=name,
                    factory=factory,
                    options=options,
                    plugin=plugin,
                    summary=summary,
                    trait_spec=traits if callable(traits) else frozenset(traits),
                    requires=frozenset(requires),
                    conflicts=dict(conflicts or {}),
                    recommends=recommends,
                    paper=paper,
                    needs=tuple(needs),
                    render=render,
                )
            )

        return register

    def add(self, component: Component) -> None:
        problem = self._invalid(component)
        if problem:
            self.problems.append(PluginProblem(component.plugin, problem))
            return
        self._components[component.kind][component.name] = component

    def _invalid(self, c: Component) -> str | None:
        if not NAME_PATTERN.match(c.name):
            return f"{c.label}: names are lower-case letters, digits and '-'"
        if not (isinstance(c.options, type) and issubclass(c.options, Options)):
            return f"{c.label}: options must subclass ganforge_core.Options"
        if not callable(c.factory):
            return f"{c.label}: factory is not callable"
        existing = self._components[c.kind].get(c.name)
        if existing is not None:
            return f"{c.label} is already registered by plugin '{existing.plugin}'; kept that one"
        return None

    def get(self, kind: Kind, name: str) -> Component:
        found = self._components[kind].get(name)
        if found is None:
            names = self._components[kind]
            raise ConfigError(
                f"unknown {kind} '{name}'{did_you_mean(name, names)}; valid: {one_of(names)}"
            )
        return found

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._components[kind])

    def all(self, kind: Kind | None = None) -> list[Component]:
        kinds = [kind] if kind else KINDS
        return [c for k in kinds for _, c in sorted(self._components[k].items())]
