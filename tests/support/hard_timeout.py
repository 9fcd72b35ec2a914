"""The last line against a hung test: the process ends, naming the test and every thread's stack.

pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs too long by raising in the
main thread (SIGALRM). It has two holes, and a CI run once hung for 20 minutes, until killed from
outside, in the teardown of a test that had failed:

- it cancels its timer as soon as a phase of a test fails (its ``pytest_exception_interact``
  hook, meant for a debugger), so the teardown of a failed test runs with no bound at all (there
  grpc.aio can wait forever: it shuts its process-wide completion queue down, in a destructor,
  when the last channel or server goes, and waits for every call still open on it);
- its exception is raised only where the main thread runs Python code: a C call that never
  returns to it is not interrupted, and one raised in a destructor or an event-loop callback is
  printed and dropped (the wait ends, the test may pass).

So a watchdog thread is armed for each test (setup, call and teardown together) at
pytest-timeout's limit plus a grace period (``GRACE_S``). When it fires it writes the test's id
and the stack of every thread to the real stderr, kills the processes this one started
(brokers, nodes) and ends this process. Under pytest-xdist the controller then reports that the
worker crashed while running that test, starts another worker, and the run fails; without xdist
the run ends with exit status ``EXIT_STATUS``.

Off when pytest-timeout is off (``--timeout 0``) and under a debugger (``--pdb``, ``--trace``).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
from collections.abc import Generator
from pathlib import Path

import pytest

# Past pytest-timeout's limit: time for its own (graceful) failure to end the test first
# (ini ``hard_timeout_grace``, seconds).
GRACE_S = 60.0
# pytest's "tests failed" status: the run must fail, whatever stage it was at.
EXIT_STATUS = 1


def limit_s(item: pytest.Item) -> float | None:
    """pytest-timeout's limit for ``item`` (its marker, else ``--timeout``, else the ini)."""
    marker = item.get_closest_marker("timeout")
    value: object = None
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    if value is None:
        value = item.config.getoption("timeout", None)
    if value is None:
        try:
            value = item.config.getini("timeout")
        except ValueError:  # pytest-timeout is not loaded (-p no:timeout)
            return None
    if value in (None, ""):
        return None
    seconds = float(str(value))
    return seconds if seconds > 0 else None


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc; none found elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class HardTimeout:
    def __init__(self, config: pytest.Config) -> None:
        # The real stderr, taken now: while a test runs, pytest captures file descriptor 2.
        self._stderr = os.dup(2)
        self._grace_s = float(config.getini("hard_timeout_grace"))
        self._enabled = not (config.getoption("usepdb") or config.getoption("trace"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        limit = limit_s(item) if self._enabled else None
        if limit is None:
            yield
            return
        timer = threading.Timer(limit + self._grace_s, self._fire, (item.nodeid, limit))
        timer.daemon = True
        timer.name = f"hard-timeout {item.nodeid}"
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _fire(self, nodeid: str, limit: float) -> None:
        message = (
            f"\n\nHARD TIMEOUT: {nodeid} is still running {limit + self._grace_s:g} s after it "
            "started "
            f"(pytest-timeout's limit {limit:g} s did not end it). The stack of every thread "
            f"follows; then this process (pid {os.getpid()}) exits.\n"
        )
        os.write(self._stderr, message.encode())
        faulthandler.dump_traceback(file=self._stderr, all_threads=True)
        for child in _children(os.getpid()):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass  # gone already
        os._exit(EXIT_STATUS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "hard_timeout_grace",
        "seconds past pytest-timeout's limit before a test still running ends the process",
        default=str(GRACE_S),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(HardTimeout(config), "cairn-hard-timeout")
