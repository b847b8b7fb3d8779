"""Progress bars on the waits outside the training loop that last more than a few seconds:
loading or preparing a dataset, training the digit classifier, evaluating metrics.

``with progress("reading images", total=n) as wait: ... wait.advance()`` draws a rich bar
on stderr when stderr is a terminal, as the live training view does, and nothing elsewhere;
:func:`shown` overrides that for the code inside it (``train(quiet=True)``, ``live=False``,
``ganforge eval --quiet``). Waits inside waits (a dataset built by another, a classifier
trained by a metric during the evaluation) and waits under the live training view share one
rich display, since a terminal holds only one. Plugins use it as the core does. No torch here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_visible: ContextVar[bool | None] = ContextVar("ganforge_waits_visible", default=None)
_display: ContextVar[Any] = ContextVar("ganforge_waits_display", default=None)


class Wait:
    """One wait's bar (or nothing, when hidden): advance it, or change what it says."""

    def __init__(self, display: Any = None, task: Any = None) -> None:
        self._display, self._task = display, task

    def advance(self, amount: float = 1) -> None:
        if self._display is not None:
            self._display.advance(self._task, amount)

    def describe(self, text: str) -> None:
        if self._display is not None:
            self._display.update(self._task, description=text)


def visible() -> bool:
    """Whether a wait started here would show its bar."""
    chosen = _visible.get()
    return sys.stderr.isatty() if chosen is None else chosen


@contextmanager
def shown(on: bool) -> Iterator[None]:
    """Show (or hide) the bars of the waits inside, whatever stderr is."""
    token = _visible.set(on)
    try:
        yield
    finally:
        _visible.reset(token)


@contextmanager
def joining(display: Any) -> Iterator[None]:
    """Inside, waits add their bars to ``display`` (a running rich Progress: the live view's)."""
    token = _display.set(display)
    try:
        yield
    finally:
        _display.reset(token)


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Wait]:
    """A bar for a wait of ``total`` steps (None: unknown, a pulsing bar), gone when it ends."""
    if not visible():
        yield Wait()
        return
    display = _display.get()
    if display is not None:
        task = display.add_task(description, total=total)
        try:
            yield Wait(display, task)
        finally:
            display.remove_task(task)
        return
    with _standalone() as display, joining(display):
        yield Wait(display, display.add_task(description, total=total))


def _standalone() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
