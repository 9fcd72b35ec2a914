"""A node does not load the SQL engine or Arrow until a query needs them: together they cost
about 55 MiB of resident memory at import (issue 10's memory target: a node's RSS under load at
most half of Restate's), and most nodes seldom answer a query."""

from __future__ import annotations

import subprocess
import sys


def test_starting_a_node_loads_neither_duckdb_nor_pyarrow() -> None:
    probe = (
        "import sys, runtime.node, runtime.cli, runtime.console.app; "
        "print(sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
