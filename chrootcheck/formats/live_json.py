"""``chrootcheck ps --format json``: the report as data, quickly (thousands of processes).

The same shape as ``formats.common.to_data`` gives (field names as keys, every string through
``printable``), walking ``vars()`` of the frozen dataclasses instead of ``dataclasses.fields``.
"""

from __future__ import annotations

from typing import Any

_PLAIN = frozenset({int, float, bool, type(None)})


def ps_data(obj: Any) -> Any:
    # Dispatch on the exact type first: a listing of 1,000 processes is about 26,000 values.
    kind = type(obj)
    if kind is str:
        return obj if obj.isascii() and obj.isprintable() else _printable(obj)
    if kind in _PLAIN:
        return obj
    if kind is tuple or kind is list:
        return [ps_data(v) for v in obj]
    if hasattr(kind, "__dataclass_fields__"):
        return {k: ps_data(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {ps_data(str(k)): ps_data(v) for k, v in obj.items()}
    if isinstance(obj, str):  # a str subclass (an enum value)
        return _printable(str(obj))
    return obj


def _printable(s: str) -> str:
    # formats.common brings the catalogue and the report model: imported only for the rare
    # string that needs escaping, so that ps's start-up does without them.
    from chrootcheck.formats.common import printable

    return printable(s)
