"""The ``ganforge`` commands, grouped by what they do; :mod:`ganforge_core.cli` assembles the app.

* :mod:`.common`: flag names, one-line errors, config files.
* :mod:`.training`: ``run`` and ``config show``, which share one set of flags.
* :mod:`.inspection`: ``plugins``, ``sample`` and ``eval``.
* :mod:`ganforge_core.clidocs`: the hidden ``docs cli`` command behind docs/cli.md.

Torch is imported only inside commands that need it.
"""
