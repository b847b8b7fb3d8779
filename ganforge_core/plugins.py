"""The plugin manager: entry points, the allow-list, and load problems.

Plugins come from the ``ganforge`` entry-point group, ganforge's own included.
A plugin that fails to import, implements a hook that does not exist, or
registers something invalid is reported by name; the others still load.
Set ``GANFORGE_PLUGINS`` to a comma-separated list of entry-point names to load
only those (an empty value loads none).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from ganforge_core import hookspecs
from ganforge_core.kinds import REGISTER_HOOKS
from ganforge_core.registry import PluginProblem, Registry

ENTRY_POINT_GROUP = "ganforge"
ALLOW_LIST_VARIABLE = "GANFORGE_PLUGINS"

PER_PLUGIN = {"register"}  # hook arguments built for each plugin by call_each


def _allowed() -> set[str] | None:
    value = os.environ.get(ALLOW_LIST_VARIABLE)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


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
        allowed = _allowed()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                self.problems.append(PluginProblem(ep.name, f"failed to import: {exc!r}"))
                continue
            self._add(ep.name, module)
        for name, plugin in extra:
            self._add(name, plugin)
        self.registry = self._collect()

    def _add(self, name: str, plugin: object) -> None:
        unknown = _unknown_hooks(plugin)
        if unknown:
            self.problems.append(
                PluginProblem(name, f"implements unknown hook(s) {', '.join(unknown)}; not loaded")
            )
            return
        if self.manager.has_plugin(name) or self.manager.is_registered(plugin):
            self.problems.append(PluginProblem(name, "is registered twice; kept the first"))
            return
        try:
            self.manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.problems.append(PluginProblem(name, f"invalid hook implementation: {exc}"))

    def call_each(
        self,
        hook_name: str,
        on_error: Callable[[str, Exception], None],
        skip: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        """Call each plugin's implementation of a hook in turn, in registration order.

        Unlike ``manager.hook.NAME(...)``, one implementation that raises does not
        stop the others: ``on_error(plugin_name, exception)`` hears of it instead.
        A value in ``kwargs`` may be a callable taking the plugin's name, for
        arguments made per plugin (the register callbacks). Plugins named in
        ``skip`` are not called.
        """
        skipped = set(skip)
        # get_hookimpls() lists implementations in registration order (pluggy calls them
        # in reverse); registration order is what makes the first of two clashing names win.
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name in skipped:
                continue
            args = {k: v(impl.plugin_name) if k in PER_PLUGIN else v for k, v in kwargs.items()}
            try:
                impl.function(*(args[name] for name in impl.argnames))
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported, not fatal
                on_error(impl.plugin_name, exc)

    def _collect(self) -> Registry:
        registry = Registry()
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
