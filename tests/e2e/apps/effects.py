"""Side effects the e2e apps perform, and the gate a test opens to let a step go on.

A step that waits at a gate polls for ``PATH.gate`` without blocking the endpoint, so other
invocations keep running; the test creates the file with ``open_gate(PATH)``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def append_line(path: str, line: str) -> str:
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


async def wait_for_gate(path: str) -> bool:
    # The SDK runs this step only once the steps before it are durable (their results are in
    # the log), so a test that sees ``PATH.waiting`` may kill the node without losing them.
    await asyncio.to_thread(Path(path + ".waiting").touch)
    gate = Path(path + ".gate")
    while not await asyncio.to_thread(gate.exists):  # noqa: ASYNC110 - a file, not an event
        await asyncio.sleep(0.02)
    return True


def at_gate(path: str | Path) -> bool:
    """Whether the step waiting at ``path``'s gate has started (everything before is durable)."""
    return Path(f"{path}.waiting").exists()


def open_gate(path: str | Path) -> None:
    Path(f"{path}.gate").touch()
