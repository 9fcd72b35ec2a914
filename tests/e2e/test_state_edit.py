"""Editing an object's state through the log (issue 11): ``POST /services/{s}/state`` and
``cairn state edit``, against a real node and a real ``python -m sdk`` endpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client
from tests.e2e.test_cli import _run_main

APP = "tests.e2e.apps.core:app"


@pytest.fixture(scope="module")
def log_kind() -> str:
    """The local log only: the edit is one record like any other (the Kafka log appends it
    the same way; tests/e2e/test_cluster.py covers it on Kafka from another node)."""
    return "local"


def _bytes(value: str) -> list[int]:
    return list(value.encode())


async def _state(client: Client, key: str) -> dict[str, Any]:
    response = await client.admin("GET", f"/services/Counter/state/{key}")
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


async def test_a_patched_counter_is_what_the_next_call_sees(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    before = await _state(client, key)
    assert before["state"] == {}
    body = {"object_key": key, "version": before["version"], "new_state": {"count": _bytes("41")}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 200, response.body
    after = await _state(client, key)
    assert after["state"] == {"count": 41}
    assert (
        response.json() == {"version": after["version"]} and after["version"] != before["version"]
    )
    added = await client.call(f"/Counter/{key}/add", 1)
    assert (added.status, added.json()) == (200, 42)
    # new_state_json: each value stored as its JSON encoding; names left out are removed.
    body = {"object_key": key, "version": None, "new_state_json": {"note": {"a": [1, "x"]}}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 200, response.body
    state = await client.call(f"/Counter/{key}/state")
    assert state.json() == {"note": {"a": [1, "x"]}}


async def test_a_version_mismatch_is_409_and_changes_nothing(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    await client.call(f"/Counter/{key}/add", 5)
    stale = (await _state(client, "never-written"))["version"]
    body = {"object_key": key, "version": stale, "new_state_json": {"count": 100}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 409, response.body
    assert response.json() == {"code": 409, "message": "state version mismatch"}
    assert (await _state(client, key))["state"] == {"count": 5}


async def test_a_patch_waits_for_the_running_invocation_of_its_key(
    shared: Cluster, client: Client
) -> None:
    """``hold`` holds the key's lock until its awakeable is resolved: the patch sent meanwhile
    is applied only after it ends (the state it sees stays its own), before the next call."""
    key = uuid.uuid4().hex
    holder = await client.send(f"/Counter/{key}/hold")

    async def pending() -> Any:
        return (await _state(client, key))["state"].get("pending")

    awakeable_id = await client.wait_for(pending)
    body = {"object_key": key, "version": None, "new_state_json": {"count": 7}}
    patch = asyncio.ensure_future(client.admin("POST", "/services/Counter/state", body))
    # Give the patch ample time to reach the log: it must stay queued, the state untouched.
    await asyncio.sleep(1.0)
    assert not patch.done()
    assert (await _state(client, key))["state"] == {"pending": awakeable_id}
    response = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "go")
    assert response.status == 202, response.body
    assert (await client.attach(holder)).json() == "go"
    applied = await asyncio.wait_for(patch, 30)
    assert applied.status == 200, applied.body
    assert (await _state(client, key))["state"] == {"count": 7}
    assert (await client.call(f"/Counter/{key}/add", 1)).json() == 8


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/services/Counter/state", [1, 2], 400, "expected"),
        ("/services/Counter/state", {"object_key": 3, "new_state": {}}, 400, "object_key"),
        ("/services/Counter/state", {"object_key": "k"}, 400, "exactly one"),
        (
            "/services/Counter/state",
            {"object_key": "k", "new_state": {"a": [1, 256]}},
            400,
            "array of bytes",
        ),
        (
            "/services/Counter/state",
            {"object_key": "k", "version": 1, "new_state": {}},
            400,
            "version",
        ),
        ("/services/Counter/state", {"object_key": "k", "new_state": {}, "x": 1}, 400, "unknown"),
        ("/services/Nope/state", {"object_key": "k", "new_state": {}}, 404, "not found"),
        (
            "/services/Counter/state",
            {"object_key": "k", "new_state_json": {"n" * 5000: 1}},
            400,
            "exceeds the limit",
        ),
        ("/services/Counter/state", {"object_key": "k" * 5000, "new_state": {}}, 400, "the key"),
        ("/services/Greeter/state", {"object_key": "k", "new_state": {}}, 400, "virtual objects"),
    ],
)
async def test_bad_bodies_get_a_clear_json_error(
    shared: Cluster, client: Client, path: str, body: Any, status: int, words: str
) -> None:
    response = await client.admin("POST", path, body)
    assert response.status == status, response.body
    error = response.json()
    assert error["code"] == status and words in error["message"], error


async def test_a_body_that_is_not_json_is_400(shared: Cluster, client: Client) -> None:
    response = await client.request(
        "POST", f"{client.node.admin}/services/Counter/state", raw=b"{not json"
    )
    assert response.status == 400, response.body
    assert response.json()["code"] == 400


# ---------------------------------------------------------------- cairn state edit

# An $EDITOR for the test: sets "count" to 10 and adds "tag" in the file it is given (as an
# operator would in vi), keeping the rest of the document as it was.
_EDITOR_SCRIPT = """
import json, sys
path = sys.argv[1]
document = json.load(open(path))
document["count"] = 10
document["tag"] = "edited"
open(path, "w").write(json.dumps(document))
"""


async def _cli(shared: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_run_main, [*args, "--admin", shared.node.admin])


async def test_cli_edit_in_the_editor_sends_the_new_state_with_its_version(
    shared: Cluster, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = uuid.uuid4().hex
    await client.call(f"/Counter/{key}/put", {"count": 1, "keep": {"a": [1, 2]}})
    script = tmp_path / "editor.py"
    script.write_text(_EDITOR_SCRIPT)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    done = await _cli(shared, "state", "edit", "Counter", key)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.startswith(f"updated Counter/{key} (version ")
    state = (await client.call(f"/Counter/{key}/state")).json()
    assert state == {"count": 10, "keep": {"a": [1, 2]}, "tag": "edited"}
    # The same edit again changes nothing: nothing is sent, the version stays.
    version = (await _state(client, key))["version"]
    done = await _cli(shared, "state", "edit", "Counter", key, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert json.loads(done.stdout)["changed"] is False
    assert (await _state(client, key))["version"] == version


async def test_cli_set_and_delete_without_an_editor(shared: Cluster, client: Client) -> None:
    key = uuid.uuid4().hex
    await client.call(f"/Counter/{key}/put", {"count": 1, "old": "x"})
    done = await _cli(
        shared, "state", "edit", "Counter", key, "--set", "count=41", "--delete", "old", "--json"
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    result = json.loads(done.stdout)
    assert result["changed"] is True and result["state"] == {"count": 41}
    assert result["version"] == (await _state(client, key))["version"]
    assert (await client.call(f"/Counter/{key}/add", 1)).json() == 42
    done = await _cli(shared, "state", "edit", "Counter", key, "--set", 'note={"n": 1}')
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.startswith(f"updated Counter/{key}")
    assert (await _state(client, key))["state"] == {"count": 42, "note": {"n": 1}}


async def test_cli_from_file_and_its_errors(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    key = uuid.uuid4().hex
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"count": 3, "blob": {"$bytes": "AP8="}}))
    done = await _cli(shared, "state", "edit", "Counter", key, "--from-file", str(path))
    assert done.returncode == 0, (done.stdout, done.stderr)
    body = await client.admin("GET", f"/services/Counter/state/{key}?format=bytes")
    assert body.json()["state"] == {"count": list(b"3"), "blob": [0, 255]}
    path.write_text("[1]")
    done = await _cli(shared, "state", "edit", "Counter", key, "--from-file", str(path))
    assert done.returncode == 1 and "JSON object" in done.stderr
    done = await _cli(shared, "state", "edit", "Counter", key, "--delete", "nope")
    assert done.returncode == 1 and "no state entry 'nope'" in done.stderr
    done = await _cli(shared, "state", "edit", "Greeter", key, "--set", "a=1")
    assert done.returncode == 1 and "400" in done.stderr


async def test_cli_edit_refused_when_the_state_changed_meanwhile(
    shared: Cluster, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor is open while a handler changes the state: the edit is refused (exit 1, a
    clear message) and the handler's change stays."""
    key = uuid.uuid4().hex
    await client.call(f"/Counter/{key}/add", 1)
    script = tmp_path / "racing_editor.py"
    script.write_text(
        "import json, sys, urllib.request\n"
        f"urllib.request.urlopen(urllib.request.Request('{shared.node.ingress}/Counter/{key}/add',"
        " data=b'5', headers={'content-type': 'application/json'}), timeout=30).read()\n"
        "path = sys.argv[1]\n"
        "open(path, 'w').write(json.dumps({'count': 100}))\n"
    )
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    done = await _cli(shared, "state", "edit", "Counter", key)
    assert done.returncode == 1
    assert "changed since it was read" in done.stderr and "nothing was changed" in done.stderr
    assert (await _state(client, key))["state"] == {"count": 6}


async def test_a_patch_not_applied_within_the_leader_timeout_is_503_and_applies_later(
    tmp_path: Path,
) -> None:
    """A key held longer than ``--ingress-leader-timeout``: the request gets 503 with
    Retry-After and says why, and the patch, already in the log, applies once the key is free."""
    started = start_cluster(APP, "local", tmp_path, None, extra=["--ingress-leader-timeout", "1"])
    client = Client(started.node)
    try:
        key = uuid.uuid4().hex
        holder = await client.send(f"/Counter/{key}/hold")

        async def pending() -> Any:
            return (await _state(client, key))["state"].get("pending")

        awakeable_id = await client.wait_for(pending)
        body = {"object_key": key, "version": None, "new_state_json": {"count": 3}}
        response = await client.admin("POST", "/services/Counter/state", body)
        assert response.status == 503, response.body
        assert response.headers["Retry-After"]
        assert "not confirmed" in response.json()["message"]
        assert (await _state(client, key))["state"] == {"pending": awakeable_id}
        await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "go")
        assert (await client.attach(holder)).status == 200

        async def patched() -> bool:
            return (await _state(client, key))["state"] == {"count": 3}

        await client.wait_for(patched)
    finally:
        await client.close()
        stop_cluster(started)
