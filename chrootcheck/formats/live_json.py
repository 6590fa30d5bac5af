"""``chrootcheck ps --format json``: the report as data, quickly (thousands of processes).

The same shape as ``formats.common.to_data`` gives (field names as keys, every string through
``printable``), walking ``vars()`` of the frozen dataclasses instead of ``dataclasses.fields``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chrootcheck.formats.common import printable


def ps_data(obj: Any) -> Any:
    if isinstance(obj, str):
        return printable(obj) if not obj.isascii() or not obj.isprintable() else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: ps_data(v) for k, v in vars(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [ps_data(v) for v in obj]
    if isinstance(obj, dict):
        return {ps_data(str(k)): ps_data(v) for k, v in obj.items()}
    return obj
