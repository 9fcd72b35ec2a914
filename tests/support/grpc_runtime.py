"""One grpc.aio reference held for the whole test run.

grpc.aio shuts its process-wide completion queue down when the last of its channels and servers
goes, and waits there, in that object's destructor, for every operation still open on the queue.
A gRPC server that a test left started (a fixture whose stop never ran) keeps operations open
that never end: once it has been garbage-collected, the next test to release the process's last
channel or server waits in that destructor forever. A CI run hung so, in a fixture's teardown
(tests/unit/support/test_grpc_runtime.py reproduces it). Holding one reference from the start
keeps the queue up until the process exits: such a leak still fails the test during which the
server is collected (grpc's "Event loop is closed" and "never awaited" unraisable errors), it
no longer hangs a later one.
"""

from __future__ import annotations

import grpc
import pytest


def pytest_configure(config: pytest.Config) -> None:
    grpc.aio.init_grpc_aio()
