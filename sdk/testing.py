"""An in-process test harness: an embedded Cairn node and the services under test in one process.

    async with TestEnvironment(greeter, counter) as env:
        assert await env.client.call("Greeter", "greet", "Ada") == "Hello, Ada!"
        invocation_id = await env.client.send("Reminder", "remind", "tea")
        await env.advance(timedelta(hours=1))   # the handler's sleep is over at once
        assert await env.client.attach(invocation_id) == "time for tea"

The node runs on the embedded local log and RocksDB in a temp dir; the services are served over
gRPC on 127.0.0.1 by ``sdk.start_server``; nothing else starts (no Docker, no extra process).
``advance`` moves the node's timer clock forward: sleeps, timeouts and delayed sends that are due
by then fire without waiting. As a pytest fixture::

    env = sdk.testing.fixture(greeter)   # a fixture named after the variable it is bound to

    async def test_greet(env: TestEnvironment) -> None: ...

This is the one SDK module that imports the runtime (to embed the node); the SDK's own code never
imports it, so an endpoint does not depend on the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from runtime.clock import AdjustableClock
from runtime.node import Node, NodeConfig
from runtime.stopping import StopStep, run_steps
from sdk import _clock
from sdk.definitions import App, Service, VirtualObject, Workflow, app
from sdk.endpoint import RunningEndpoint, start_server
from sdk.ports import free_port

__all__ = ["CallFailed", "TestClient", "TestEnvironment", "fixture"]

# Few partitions: a test node serves a handful of invocations, and each partition is a leader,
# a store column and timers to start.
_PARTITIONS = 2


class CallFailed(Exception):
    """A call or attach ended with an error: ``status`` (HTTP) and the runtime's ``message``
    (a handler's TerminalError, a cancel, an unknown service...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _path(service: str, handler: str, key: str | None) -> str:
    parts = [service] if key is None else [service, key]
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in [*parts, handler])


class TestClient:
    """Calls handlers through the node's ingress and reads through its admin API, as a real
    client would (JSON in and out)."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, session: aiohttp.ClientSession, ingress: str, admin: str) -> None:
        self._session = session
        self._ingress = ingress
        self._admin = admin

    async def _request(self, method: str, url: str, body: Any = None) -> Any:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        if body is None:
            # No input: no body and no content-type (a handler without input refuses one).
            kwargs["skip_auto_headers"] = ["Content-Type"]
        async with self._session.request(method, url, **kwargs) as response:
            text = await response.text()
            if response.status >= 300:
                message = text
                if response.content_type == "application/json":
                    payload = await response.json()
                    message = payload.get("message", text) if isinstance(payload, dict) else text
                raise CallFailed(response.status, message)
            return None if not text else await response.json(content_type=None)

    async def call(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call and wait for the result; a failure raises ``CallFailed``."""
        url = self._ingress + _path(service, handler, key)
        if idempotency_key is None:
            return await self._request("POST", url, arg)
        headers = {"idempotency-key": idempotency_key}
        async with self._session.post(url, json=arg, headers=headers) as response:
            if response.status >= 300:
                raise CallFailed(response.status, await response.text())
            return await response.json(content_type=None)

    async def send(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        delay: timedelta | None = None,
    ) -> str:
        """Start without waiting (after ``delay``, on the node's clock); returns the id."""
        url = self._ingress + _path(service, handler, key) + "/send"
        if delay is not None:
            url += f"?delay={int(delay.total_seconds() * 1000)}ms"
        accepted = await self._request("POST", url, arg)
        invocation_id: str = accepted["invocationId"]
        return invocation_id

    async def attach(self, invocation_id: str) -> Any:
        """Wait for an invocation's result (``CallFailed`` if it failed)."""
        quoted = urllib.parse.quote(invocation_id, safe="")
        return await self._request("GET", f"{self._ingress}/restate/invocation/{quoted}/attach")

    async def workflow_output(self, workflow: str, key: str) -> Any:
        """Wait for a workflow run's result."""
        path = f"/restate/workflow/{_path(workflow, 'attach', key)[1:]}"
        return await self._request("GET", self._ingress + path)

    async def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None:
        quoted = urllib.parse.quote(awakeable_id, safe="")
        url = f"{self._ingress}/restate/awakeables/{quoted}/resolve"
        await self._request("POST", url, value)

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        quoted = urllib.parse.quote(awakeable_id, safe="")
        url = f"{self._ingress}/restate/awakeables/{quoted}/reject"
        async with self._session.post(url, data=reason.encode()) as response:
            if response.status >= 300:
                raise CallFailed(response.status, await response.text())

    async def state(self, service: str, key: str) -> dict[str, Any]:
        """Every state entry of a virtual object or workflow key, as JSON values."""
        path = f"/services/{_path(service, 'state', None)[1:]}/{urllib.parse.quote(key, safe='')}"
        body = await self._request("GET", self._admin + path)
        state: dict[str, Any] = body["state"]
        return state

    async def status(self, invocation_id: str) -> dict[str, Any]:
        """The admin API's view of an invocation: status, target, journal..."""
        quoted = urllib.parse.quote(invocation_id, safe="")
        body: dict[str, Any] = await self._request("GET", f"{self._admin}/invocations/{quoted}")
        return body


class TestEnvironment:
    """An embedded node serving ``services`` (or an ``App``), as an async context manager."""

    __test__ = False

    def __init__(self, *services: Service | VirtualObject | Workflow | App) -> None:
        apps = [s for s in services if isinstance(s, App)]
        if apps and len(services) > 1:
            raise ValueError("give an App or services, not both")
        self._app = apps[0] if apps else app([s for s in services if not isinstance(s, App)])
        self._clock = AdjustableClock()
        self._advanced_ms = 0
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._node: Node | None = None
        self._endpoint: RunningEndpoint | None = None
        self._session: aiohttp.ClientSession | None = None
        self.client: TestClient

    async def __aenter__(self) -> TestEnvironment:
        self._directory = tempfile.TemporaryDirectory(prefix="cairn-test-")
        ingress, admin = free_port(), free_port()
        config = NodeConfig(
            data_dir=Path(self._directory.name),
            ingress_bind=f"127.0.0.1:{ingress}",
            admin_bind=f"127.0.0.1:{admin}",
            partitions=_PARTITIONS,
        )
        try:
            self._endpoint = await start_server(self._app, "127.0.0.1", 0)
            self._node = Node(config, clock=self._clock)
            await self._node.start()
            self._session = aiohttp.ClientSession()
            self.client = TestClient(
                self._session, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}"
            )
            endpoint_uri = f"http://127.0.0.1:{self._endpoint.port}"
            await self.client._request(
                "POST", f"http://127.0.0.1:{admin}/deployments", {"uri": endpoint_uri}
            )
        except BaseException:
            # The failure to start is the one to raise; a failure to stop is logged.
            with contextlib.suppress(Exception):
                await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        """Stop what was started, every part even when one fails (the first failure is raised
        once all were tried): a node that fails to stop still leaves no endpoint serving and no
        data directory behind."""
        # This process's handler clock back to the wall clock, for the next environment.
        _clock.shift(-self._advanced_ms)
        self._advanced_ms = 0
        session, node, endpoint, directory = (
            self._session,
            self._node,
            self._endpoint,
            self._directory,
        )
        self._session, self._node, self._endpoint, self._directory = None, None, None, None
        steps: list[StopStep] = []
        if session is not None:
            steps.append(("client session", session.close))
        if node is not None:
            steps.append(("node", node.stop))
        if endpoint is not None:
            steps.append(("endpoint", lambda: endpoint.stop(0)))
        if directory is not None:
            steps.append(("data directory", directory.cleanup))
        await run_steps(steps, "the test environment")

    async def advance(self, by: timedelta) -> None:
        """Move the node's clock forward: timers due by then (sleeps, timeouts, delayed sends)
        fire now. What they start runs as usual: await its result (``attach``, a call)."""
        ms = int(by.total_seconds() * 1000)
        self._clock.advance(ms)
        # The handlers' clock too: a timer they create from now on counts from the new time.
        _clock.shift(ms)
        self._advanced_ms += ms
        # Let the timer loops see the jump before the caller goes on.
        await asyncio.sleep(0)

    async def wait_for(
        self,
        check: Callable[[], Awaitable[bool]],
        within: timedelta = timedelta(seconds=30),
    ) -> None:
        """Poll ``check`` until it is true (``TimeoutError`` past ``within``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within.total_seconds()
        while not await check():
            if loop.time() > deadline:
                raise TimeoutError(f"not true within {within}")
            await asyncio.sleep(0.02)


def fixture(*services: Service | VirtualObject | Workflow | App) -> Any:
    """A pytest fixture (function scope) giving a started ``TestEnvironment`` of ``services``:
    bind it to a module-level name and ask for that name in tests."""
    import pytest  # only where tests run: the SDK does not depend on pytest

    @pytest.fixture
    async def environment() -> AsyncIterator[TestEnvironment]:
        async with TestEnvironment(*services) as started:
            yield started

    return environment
