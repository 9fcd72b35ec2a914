"""The event loop switch (issue 10): ``--event-loop`` / ``CAIRN_EVENT_LOOP`` of the node and of
``python -m sdk``, and what each choice runs on."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from runtime import cli
from runtime.config import NodeConfig
from sdk import endpoint
from sdk.event_loop import GC_GEN0_THRESHOLD, loop_name, run

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("CAIRN_")]:
        monkeypatch.delenv(name)
    return monkeypatch


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_each_choice_runs_on_its_loop() -> None:
    assert run(_loop_type(), "uvloop") is uvloop.Loop
    assert run(_loop_type(), "auto") is uvloop.Loop  # installed here: auto takes it
    assert not issubclass(run(_loop_type(), "asyncio"), uvloop.Loop)
    assert (loop_name("auto"), loop_name("asyncio")) == ("uvloop", "asyncio")
    with pytest.raises(ValueError, match="event loop must be one of auto, uvloop, asyncio"):
        run(_loop_type(), "trio")


def test_auto_falls_back_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert not issubclass(run(_loop_type(), "auto"), uvloop.Loop)
    with pytest.raises(ValueError, match="uvloop package is not installed"):
        run(_loop_type(), "uvloop")


def test_node_flag_environment_and_default(clean_env: pytest.MonkeyPatch) -> None:
    def config(*flags: str) -> NodeConfig:
        return cli._config(cli._parser().parse_args(["server", *flags]))

    assert config().event_loop == "auto"
    assert config("--event-loop", "asyncio").event_loop == "asyncio"
    clean_env.setenv("CAIRN_EVENT_LOOP", "uvloop")
    assert config().event_loop == "uvloop"
    clean_env.setenv("CAIRN_EVENT_LOOP", "fast")  # (the environment skips argparse's choices)
    with pytest.raises(SystemExit, match="event loop must be one of auto, uvloop, asyncio"):
        config()
    with pytest.raises(ValueError, match="event loop"):
        NodeConfig(data_dir=Path("."), event_loop="fast")


def test_endpoint_refuses_an_unknown_loop(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CAIRN_EVENT_LOOP", "fast")
    with pytest.raises(SystemExit, match="--event-loop must be one of auto, uvloop, asyncio"):
        endpoint.main(["examples.demo:app"])
    result = subprocess.run(
        [sys.executable, "-m", "sdk", "examples.demo:app", "--event-loop", "fast"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "invalid choice: 'fast'" in result.stderr


def test_run_tunes_the_collector_for_a_server() -> None:
    """Startup's objects are frozen out of the collector's scans and the youngest generation is
    collected less often (issue 10: the collector was a tenth of a loaded node's main thread)."""

    async def seen() -> tuple[int, int]:
        return gc.get_threshold()[0], gc.get_freeze_count()

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        threshold, frozen = run(seen(), "asyncio")
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert threshold == GC_GEN0_THRESHOLD
    assert frozen > 1000  # (this process's modules at least)
