"""A small TOML writer for run configurations (no dependency; ``tomllib`` reads it back).

It writes what a :class:`~ganforge_core.config.RunConfig` dumps to in JSON mode:
scalars, lists, tables (a component's ``{name, options}``) and arrays of tables
(``regularizers``, ``metrics``). ``None`` has no TOML form, so a key whose value
is ``None`` is left out; for a run configuration that means "derive it", which
is what ``None`` means there too.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: dict[str, Any]) -> str:
    """``data`` as a TOML document; ``tomllib.loads(dumps(d))`` equals ``d`` without its ``None`` values."""
    lines: list[str] = []
    _table(lines, [], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    """Scalars first (they belong to the header above them), then sub-tables, then arrays of tables."""
    for key, value in table.items():
        if value is not None and not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines.extend(["", f"[{_dotted([*path, key])}]"])
            _table(lines, [*path, key], value)
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{_dotted([*path, key])}]]"])
                _table(lines, [*path, key], item)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(part) for part in path)


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {type(key).__name__}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes (\" \\ \n \t \uXXXX ...) are all valid TOML basic-string escapes;
    # ensure_ascii=False keeps characters outside the BMP literal (TOML has no surrogate pairs).
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        if any(item is None for item in value):
            raise ValueError("TOML arrays cannot hold None")
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
