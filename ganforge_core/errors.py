"""User-facing errors: each one is a single line that says what is wrong and what is valid.

The CLI prints ``GanforgeError`` messages without a traceback and exits with
``exit_code``; anything else escaping is a bug in ganforge or a plugin.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GanforgeError(Exception):
    """A problem with the user's input or environment, not a bug."""

    exit_code = 2


class ConfigError(GanforgeError):
    """An unknown name, a bad option or an impossible combination."""


class DataError(GanforgeError):
    """A dataset that cannot be found or read."""


class CheckpointError(GanforgeError):
    """A checkpoint that is missing, corrupt, unsafe or does not fit the run."""


class WriteError(GanforgeError):
    """A file that cannot be written: a full disk, a read-only directory. The environment
    failed, not the input: exit status 1, as for any OSError the command line reports."""

    exit_code = 1


class TrainingDiverged(GanforgeError):
    """A loss or weight became NaN or infinite."""

    exit_code = 3


class ContractError(GanforgeError):
    """A plugin's component broke its contract at train time (a loss returned a non-scalar, say).

    The message names the plugin and the component; the fix is in the plugin, but
    the run is refused with one line and exit status 2, like any other refusal.
    """


QUOTE_LIMIT = 200  # characters of a user's value an error line quotes
LINE_LIMIT = 2000  # characters of an error line, whatever it quotes


def quote(value: object) -> str:
    """``repr(value)``, cut to :data:`QUOTE_LIMIT` characters with its length, so an error
    about a huge value (a 50 MB string in a config file) stays a readable line."""
    return shorten(repr(value), QUOTE_LIMIT)


def shorten(text: str, limit: int = LINE_LIMIT) -> str:
    """``text``, or its first ``limit`` characters, an ellipsis and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class BuildError(ContractError):
    """A component's factory raised something other than a :class:`GanforgeError` (a bug in
    the plugin, or a size the machine cannot hold): one line naming the plugin and the
    component, exit status 2. The factory's exception is its ``__cause__``."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for a close match, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    names = sorted(choices)
    return ", ".join(names) if names else "none installed"

