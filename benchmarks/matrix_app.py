"""The matrix's handlers on Cairn's SDK: ``python -m sdk benchmarks.matrix_app:app``."""

from __future__ import annotations

import sdk
from benchmarks.matrix_handlers import build

app = build(sdk)
