"""A test still running past its timeout ends the pytest process, naming it, even when
pytest-timeout has stopped bounding it (tests/support/hard_timeout.py). Each case runs pytest on
a small test file in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

FAILED_THEN_STUCK = """
import time
import pytest

@pytest.fixture
def stuck_in_teardown():
    yield
    time.sleep(60)  # a stop that never returns

def test_fails_then_its_teardown_hangs(stuck_in_teardown):
    assert False
"""

SEVERAL_WITHIN_THE_LIMIT = """
import time
import pytest

@pytest.mark.parametrize("n", range(3))
def test_each_within_the_limit(n):
    time.sleep(1.5)
"""


def _pytest(tmp_path: Path, source: str, timeout_s: float, grace_s: float) -> tuple[int, str]:
    (tmp_path / "test_case.py").write_text(source)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\ntimeout = {timeout_s}\nhard_timeout_grace = {grace_s}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.hard_timeout"]
        + ["-p", "no:cacheprovider", "-q", "-c", str(tmp_path / "pytest.ini")]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_case.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_hung_teardown_of_a_failed_test_ends_the_run_naming_it(tmp_path: Path) -> None:
    started = time.monotonic()
    status, output = _pytest(tmp_path, FAILED_THEN_STUCK, timeout_s=1, grace_s=1)
    # Not the 60 s the teardown would take: pytest-timeout stopped counting at the failure.
    assert time.monotonic() - started < 50, output
    assert status == 1, output
    assert "HARD TIMEOUT: test_case.py::test_fails_then_its_teardown_hangs" in output
    assert "stuck_in_teardown" in output  # the stacks show where it hung


def test_tests_that_end_in_time_are_not_cut_short(tmp_path: Path) -> None:
    # 4.5 s in all, past one limit (timeout + grace = 3.5 s): the watchdog counts per test.
    status, output = _pytest(tmp_path, SEVERAL_WITHIN_THE_LIMIT, timeout_s=3, grace_s=0.5)
    assert status == 0, output
    assert "3 passed" in output and "HARD TIMEOUT" not in output
