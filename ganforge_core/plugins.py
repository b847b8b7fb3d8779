"""The plugin manager: entry points, the allow-list, and load problems.

Plugins come from the ``ganforge`` entry-point group, ganforge's own included.
A plugin that fails to import, implements a hook that does not exist or as a
hook wrapper, or registers something invalid is reported by name; the others
still load. Set ``GANFORGE_PLUGINS`` to a comma-separated list of entry-point
names to load only those (an empty value loads none).

Built-in plugins are the entry points of the ``ganforge`` distribution itself.
They are registered first and win a clash of component names (the registry's
rule); hooks are called in pluggy's order.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from ganforge_core import hookspecs
from ganforge_core.errors import did_you_mean, one_of
from ganforge_core.kinds import REGISTER_HOOKS  # importable from here too
from ganforge_core.registry import ALLOW_LIST_VARIABLE, PluginProblem, Registry  # the variable: from here too

ENTRY_POINT_GROUP = "ganforge"
BUILTIN_DISTRIBUTION = "ganforge"  # entry points of this distribution are the built-in plugins

PER_PLUGIN = {"register"}  # hook arguments built for each plugin by call_each


def _allowed() -> set[str] | None:
    value = os.environ.get(ALLOW_LIST_VARIABLE)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _is_builtin(ep: EntryPoint) -> bool:
    dist = ep.dist
    return dist is not None and re.sub(r"[-_.]+", "-", dist.name).lower() == BUILTIN_DISTRIBUTION


def _unknown_hooks(plugin: object) -> list[str]:
    """Names that look like ganforge hooks but are not in the contract (a typo, say)."""
    specs = {name for name in dir(hookspecs) if name.startswith("ganforge_")}
    return sorted(
        name
        for name in dir(plugin)
        if name.startswith("ganforge_") and callable(getattr(plugin, name)) and name not in specs
    )


class Plugins:
    """A loaded plugin manager plus the registry its registration hooks fill."""

    def __init__(self, extra: Iterable[tuple[str, object]] = ()) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self.builtin: set[str] = set()  # names of the loaded built-in plugins
        allowed = _allowed()
        installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (not _is_builtin(e), e.name))
        extra = list(extra)
        names = sorted({ep.name for ep in installed} | {name for name, _ in extra})
        for name in sorted((allowed or set()) - set(names)):
            self.problems.append(
                PluginProblem(
                    name,
                    f"{ALLOW_LIST_VARIABLE} names it, but no installed plugin has that name"
                    f"{did_you_mean(name, names)}; installed: {one_of(names)}",
                )
            )
        # Built-ins first, so that a third-party entry point cannot take a built-in's name.
        for ep in installed:
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                self.problems.append(PluginProblem(ep.name, f"failed to import: {exc!r}"))
                continue
            if self._add(ep.name, module) and _is_builtin(ep):
                self.builtin.add(ep.name)
        for name, plugin in extra:
            self._add(name, plugin)
        self.registry = self._collect()

    def _add(self, name: str, plugin: object) -> bool:
        """Register one plugin, or record why not; True when it was registered."""
        problem = self._refusal(name, plugin)
        if problem is None:
            try:
                self.manager.register(plugin, name=name)
                return True
            except (pluggy.PluginValidationError, ValueError) as exc:
                problem = f"invalid hook implementation: {exc}"
        self.problems.append(PluginProblem(name, problem))
        return False

    def _refusal(self, name: str, plugin: object) -> str | None:
        unknown = _unknown_hooks(plugin)
        if unknown:
            return f"implements unknown hook(s) {', '.join(unknown)}; not loaded"
        wrappers = self._wrappers(plugin)
        if wrappers:
            return (
                f"{', '.join(wrappers)} {'is a hook wrapper' if len(wrappers) == 1 else 'are hook wrappers'}, "
                "which ganforge does not support: it calls each implementation on its own, so that "
                "one plugin's error cannot stop another's; use a plain @hookimpl (tryfirst=True or "
                "trylast=True to run before or after the others); not loaded"
            )
        if name in self.builtin:
            return "is already the name of a built-in plugin; not loaded: rename it"
        if self.manager.has_plugin(name) or self.manager.is_registered(plugin):
            return "is registered twice; kept the first"
        return None

    def _wrappers(self, plugin: object) -> list[str]:
        """The hooks ``plugin`` implements as wrappers (``wrapper=True`` or ``hookwrapper=True``)."""
        found = []
        for attr in dir(plugin):
            opts = self.manager.parse_hookimpl_opts(plugin, attr)
            if opts and (opts.get("wrapper") or opts.get("hookwrapper")):
                found.append(opts.get("specname") or attr)
        return sorted(found)

    def call_each(
        self,
        hook_name: str,
        on_error: Callable[[str, Exception], None],
        skip: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        """Call each plugin's implementation of a hook in turn, in the order pluggy would.

        That order is pluggy's documented one: ``tryfirst`` implementations first,
        ``trylast`` ones last, the others last registered first. Unlike
        ``manager.hook.NAME(...)``, one implementation that raises does not stop
        the others: ``on_error(plugin_name, exception)`` hears of it instead. A
        value in ``kwargs`` may be a callable taking the plugin's name, for
        arguments made per plugin (the register callbacks). Plugins named in
        ``skip`` are not called. Hook wrappers are refused when a plugin loads,
        so every implementation here is a plain one.
        """
        skipped = set(skip)
        # get_hookimpls() lists the implementations in the order pluggy's _multicall
        # walks backwards: reversed, it is the order pluggy calls them in.
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):
            if impl.plugin_name in skipped:
                continue
            args = {k: v(impl.plugin_name) if k in PER_PLUGIN else v for k, v in kwargs.items()}
            try:
                impl.function(*(args[name] for name in impl.argnames))
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported, not fatal
                on_error(impl.plugin_name, exc)

    def _collect(self) -> Registry:
        registry = Registry(builtin=self.builtin)  # the registry's clash rule needs no call order
        for kind, hook_name in REGISTER_HOOKS.items():

            def report(plugin: str, exc: Exception, hook_name: str = hook_name) -> None:
                registry.problems.append(PluginProblem(plugin, f"{hook_name} raised {exc!r}"))

            # Each plugin gets its own register callback, so the registry knows
            # which plugin provided what.
            self.call_each(hook_name, report, register=functools.partial(registry.registrar, kind))
        registry.problems[:0] = self.problems
        registry.plugins = [name for name, _ in self.manager.list_name_plugin()]
        return registry

    @property
    def hook(self) -> Any:
        return self.manager.hook


@functools.cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use."""
    return Plugins()


def reset() -> None:
    """Forget the loaded plugins (tests, or after installing a package)."""
    get_plugins.cache_clear()
