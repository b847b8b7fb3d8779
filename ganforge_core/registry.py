"""Name -> component, for every kind. The core owns it, so clashes are caught here."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from ganforge_core.components import KINDS, Kind, NoOptions, Options, Recommendation, Renderer, ResolveContext
from ganforge_core.errors import BuildError, ConfigError, GanforgeError, did_you_mean, one_of, quote, shorten

# Traits a later contract version split up: old name -> (its replacements, that version).
# docs/contract-changelog.md says why; docs/traits.md has the new meanings.
RENAMED_TRAITS: dict[str, tuple[tuple[str, ...], int]] = {
    "gradient-penalty": (("input-gradient-penalty", "lipschitz-penalty"), 2),
}


def _renamed(traits: Iterable[str]) -> frozenset[str]:
    return frozenset(new for t in traits for new in RENAMED_TRAITS.get(t, ((t,), 0))[0])


def _renaming(spec: Callable[[Any], Iterable[str]]) -> Callable[[Any], Iterable[str]]:
    @functools.wraps(spec)
    def traits(options: Any) -> frozenset[str]:
        return _renamed(spec(options))

    return traits


NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ALLOW_LIST_VARIABLE = "GANFORGE_PLUGINS"  # the plugins to load (ganforge_core.plugins reads it)


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
        """The factory's product. A :class:`GanforgeError` it raises is the user's to read as it
        is; any other exception is the plugin's bug, a :class:`BuildError` naming both."""
        try:
            return self.factory(options, ctx)
        except GanforgeError:
            raise
        except Exception as exc:
            raise BuildError(f"plugin '{self.plugin}': {self.label} failed to build: {quote(exc)}") from exc

    def _explain(self, exc: ValidationError) -> str:
        fields = self.options.model_fields
        valid = one_of(fields)
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "options"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown option {quote(where)}{did_you_mean(where, fields)}")
            else:
                problems.append(f"option '{where}': {shorten(error['msg'], 500)} (got {quote(error.get('input'))})")
        return f"{self.label}: {'; '.join(problems)}; valid options: {valid}"


def _plugins(names: list[str]) -> str:
    """``plugin 'a'`` or ``plugins 'a' and 'b'``."""
    quoted = [f"'{name}'" for name in names]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
    return f"plugin{'s' if len(quoted) > 1 else ''} {listed}"


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded or registered something invalid."""

    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}': {self.reason}"


class Registry:
    """Every component of every kind, plus the problems met while collecting them."""

    def __init__(self, builtin: Iterable[str] = ()) -> None:
        self.builtin = frozenset(builtin)  # names of ganforge's own plugins: they win a clash
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        # Every valid registration of a (kind, name), in the order it came, and the
        # clash problems last derived from them (replaced whenever another one comes).
        self._offers: dict[tuple[Kind, str], list[Component]] = {}
        self._clashes: dict[tuple[Kind, str], list[PluginProblem]] = {}
        self._contested: dict[tuple[Kind, str], list[str]] = {}
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
        """Record a registration. Who gets a name two plugins register does not depend
        on the order they come in: a built-in plugin's component wins over a
        third-party one, and a name registered by several plugins of the same standing
        is given to none of them (see docs/plugins.md, "Names that clash")."""
        problem = self._invalid(component)
        if problem:
            self.problems.append(PluginProblem(component.plugin, problem))
            return
        component = self._renamed_traits(component)
        key = (component.kind, component.name)
        offers = self._offers.setdefault(key, [])
        if any(offer.plugin == component.plugin for offer in offers):
            twice = f"{component.label} is registered twice; kept the first"
            self.problems.append(PluginProblem(component.plugin, twice))
            return
        offers.append(component)
        self._settle(key)

    def _settle(self, key: tuple[Kind, str]) -> None:
        offers = self._offers[key]
        builtin = [c for c in offers if c.plugin in self.builtin]
        contenders = builtin or offers  # a built-in outranks every third-party plugin
        refused = [c for c in offers if builtin and c.plugin not in self.builtin]
        problems = [PluginProblem(c.plugin, self._refusal(c, builtin)) for c in refused]
        if len(contenders) == 1:
            self._contested.pop(key, None)
            self._components[key[0]][key[1]] = contenders[0]
        else:
            names = sorted(c.plugin for c in contenders)
            problems += [PluginProblem(c.plugin, self._contest(c, names)) for c in contenders]
            self._contested[key] = names
            self._components[key[0]].pop(key[1], None)
        problems.sort(key=lambda p: p.plugin)
        stale = self._clashes.get(key, [])
        self.problems[:] = [p for p in self.problems if not any(p is old for old in stale)]
        self.problems.extend(problems)
        self._clashes[key] = problems

    @staticmethod
    def _refusal(c: Component, builtin: list[Component]) -> str:
        owners = _plugins(sorted(b.plugin for b in builtin))
        return f"{c.label} is already provided by built-in {owners}; not registered: rename it"

    @staticmethod
    def _contest(c: Component, contenders: list[str]) -> str:
        others = _plugins([p for p in contenders if p != c.plugin])
        return (
            f"{c.label} is also registered by {others}, so none of them is used; "
            f"leave all but one out with {ALLOW_LIST_VARIABLE} or rename it"
        )

    def _renamed_traits(self, c: Component) -> Component:
        """A component written to an older contract that names a trait since split up keeps
        working: the old name is read as all its replacements, with one warning naming them."""
        spec = c.trait_spec
        used = (set() if callable(spec) else set(spec)) | set(c.requires) | set(c.conflicts)
        for old in sorted(used & set(RENAMED_TRAITS)):
            new, version = RENAMED_TRAITS[old]
            self.problems.append(
                PluginProblem(
                    c.plugin,
                    f"{c.label} uses the trait '{old}', which contract version {version} split into "
                    f"{' and '.join(repr(n) for n in new)}; it is read as {'both' if len(new) == 2 else 'all'} "
                    "for now: name the one you mean",
                )
            )
        if not callable(spec) and not used & set(RENAMED_TRAITS):
            return c
        if callable(spec):
            spec = _renaming(spec)
        return dataclasses.replace(
            c,
            trait_spec=spec if callable(spec) else _renamed(spec),
            requires=_renamed(c.requires),
            conflicts={new: reason for old, reason in c.conflicts.items() for new in _renamed([old])},
        )

    def _invalid(self, c: Component) -> str | None:
        if not NAME_PATTERN.match(c.name):
            return f"{c.label}: names are lower-case letters, digits and '-'"
        if not (isinstance(c.options, type) and issubclass(c.options, Options)):
            return f"{c.label}: options must subclass ganforge_core.Options"
        if not callable(c.factory):
            return f"{c.label}: factory is not callable"
        return None

    def get(self, kind: Kind, name: str) -> Component:
        found = self._components[kind].get(name)
        contested = self._contested.get((kind, name))
        if contested:
            raise ConfigError(
                f"{kind} '{name}' is registered by {_plugins(contested)}, so none of them is used; "
                f"leave all but one out with {ALLOW_LIST_VARIABLE} (`ganforge plugins` lists them)"
            )
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
