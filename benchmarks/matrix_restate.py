"""The matrix's handlers on restate-sdk, for hypercorn in ``benchmarks/.restate/venv`` only.

Never imported by Cairn: restate-sdk is installed in that benchmarks-only venv, not in Cairn's.
"""

from __future__ import annotations

from typing import Any

from benchmarks.matrix_handlers import build

app: Any = build(__import__("restate"))
