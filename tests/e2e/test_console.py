"""The web console (README "Web console") against a real node and endpoint: its pages over HTTP
(every page answers, an unknown invocation is a 404 page, the CSRF guard refuses a POST without
the token), and in a real browser (Debian's chromium driven by Playwright; never a downloaded
browser): the overview, the invocations table and a journal timeline, a cancel from the
console, a state edit seen by the next call, and a ``<script>`` value shown as text.

Screenshots of each page go to ``tests/artifacts/console/`` (or ``$CAIRN_CONSOLE_SCREENSHOTS``;
README "Web console" says how to refresh the copies in ``docs/console/``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import ROOT

APP = "tests.e2e.apps.console:app"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A value that would run script if a page showed it as markup (and sets a flag the test reads).
XSS = '</textarea><script>window.__xss = 1</script><img src="x" onerror="window.__xss = 1">'
SHOTS = Path(os.environ.get("CAIRN_CONSOLE_SCREENSHOTS", ROOT / "tests" / "artifacts" / "console"))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = start_cluster(APP, "local", tmp_path_factory.mktemp("console"), None)
    yield started
    stop_cluster(started)


def _http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None, dict(exc.headers)


def _send(node_ingress: str, path: str, body: Any, idempotency_key: str) -> str:
    status, answer, _ = _http(
        "POST", f"{node_ingress}{path}/send", body, {"idempotency-key": idempotency_key}
    )
    assert status == 202, answer
    invocation_id: str = answer["invocationId"]
    return invocation_id


def _wait(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not met within {timeout_s} s (last: {last!r})")


def _status(console: Cluster, invocation_id: str) -> Any:
    status, body, _ = _http("GET", f"{console.node.admin}/invocations/{invocation_id}")
    return body if status == 200 else None


def _sleeping(console: Cluster, invocation_id: str) -> Any:
    """The admin status once the invocation waits on its sleep."""
    body = _status(console, invocation_id)
    if body and any(e["command"].startswith("sleep") for e in body["journal"]):
        return body
    return None


# -- over HTTP


async def test_every_page_answers_and_an_unknown_invocation_is_a_404_page(
    console: Cluster,
) -> None:
    admin = console.node.admin
    known = _send(console.node.ingress, "/Naps/nap", 600, "pages-nap")
    _wait(lambda: _sleeping(console, known))
    pages = [
        "/ui",
        "/ui/",
        "/ui/invocations",
        "/ui/invocations?service=Naps&status=suspended&page=0",
        f"/ui/invocations/{known}",
        "/ui/state",
        "/ui/state?service=Counter",
        "/ui/state?service=Counter&key=nobody",
        "/ui/subscriptions",
        "/ui/static/htmx.min.js",
        "/ui/static/console.css",
    ]
    # The same shape of id, another invocation: the partition is found, the id is not.
    unknown = known[:-6] + ("000000" if not known.endswith("000000") else "111111")
    async with aiohttp.ClientSession() as http:
        for path in pages:
            async with http.get(f"{admin}{path}") as response:
                assert response.status == 200, (path, await response.text())
        async with http.get(f"{admin}/ui/invocations/{unknown}") as response:
            assert response.status == 404
            page = await response.text()
            assert "text/html" in response.headers["content-type"]
            assert f"invocation {unknown!r} not found".replace("'", "&#39;") in page
        async with http.get(f"{admin}/ui/invocations/not-an-id") as response:
            assert response.status == 400
        async with http.get(f"{admin}/ui/state?service=Nope") as response:
            assert response.status == 404
        async with http.get(f"{admin}/ui/invocations?status=bogus") as response:
            assert response.status == 200
            assert "unknown status" in await response.text()
    assert _http("PATCH", f"{admin}/invocations/{known}/kill")[0] == 200


async def test_a_failing_step_shows_its_retries_and_failure(console: Cluster) -> None:
    admin = console.node.admin
    target = _send(console.node.ingress, "/Stubborn/fetch", None, "stubborn-1")
    _wait(
        lambda: ((_status(console, target) or {}).get("last_failure") or {}).get("attempt", 0) >= 2
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{admin}/ui/invocations?service=Stubborn") as response:
            table = await response.text()
        async with http.get(f"{admin}/ui/invocations/{target}") as response:
            page = await response.text()
    assert target in table and "the warehouse is unreachable" in table
    assert 'class="entry retrying"' in page and "the warehouse is unreachable" in page
    assert _http("PATCH", f"{admin}/invocations/{target}/kill")[0] == 200


async def test_actions_are_refused_without_the_csrf_token(console: Cluster) -> None:
    admin = console.node.admin
    target = _send(console.node.ingress, "/Naps/nap", 600, "csrf-nap")
    _wait(lambda: _sleeping(console, target))
    url = f"{admin}/ui/invocations/{target}/kill"
    # (unsafe: keep cookies of an IP address host, as a browser does.)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{admin}/ui/invocations") as page:
            assert page.status == 200
            cookie = page.cookies["cairn_csrf"]
            assert cookie["samesite"] == "Strict" and cookie["httponly"]
            token = cookie.value
        # No token at all, a wrong field, a wrong header: 403, and nothing happened.
        for data, headers in (
            ({}, {}),
            ({"csrf": token + "x"}, {}),
            ({}, {"X-CSRF-Token": "nope"}),
        ):
            async with http.post(url, data=data, headers=headers) as refused:
                assert refused.status == 403, await refused.text()
        async with aiohttp.ClientSession() as stranger:
            # The right token without the session's cookie (a cross-site form): refused too.
            async with stranger.post(url, data={"csrf": token}) as refused:
                assert refused.status == 403
        assert _status(console, target)["status"] != "completed"
        async with http.post(
            f"{admin}/ui/state",
            data={"service": "Counter", "key": "csrf", "entries": "0", "new_name": "n"},
        ) as refused:
            assert refused.status == 403
        async with http.post(url, data={"csrf": token}) as done:
            assert done.status == 200, await done.text()
            assert "kill: done" in await done.text()
        async with http.post(url, data={"csrf": token}) as again:
            # The partition's answer, shown: a killed invocation cannot be killed again.
            assert again.status == 409, await again.text()
    assert _status(console, target)["status"] == "completed"


# -- in a real browser


@pytest.fixture(scope="module")
def browser_page(console: Cluster) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "no /usr/bin/chromium: install Debian's chromium (scripts/bootstrap does, as root)"
        )
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots: {SHOTS}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def _shot(page: Any, name: str) -> None:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    print(f"screenshot: {path}")


def test_an_invocation_appears_in_the_table_with_its_journal(
    console: Cluster, browser_page: Any
) -> None:
    page = browser_page
    invocation_id = _send(console.node.ingress, "/Notes/drafting/draft", XSS, "draft-1")

    def napping() -> Any:
        body = _status(console, invocation_id)
        return body if body and len(body["journal"]) >= 5 else None

    _wait(napping)
    page.goto(f"{console.node.admin}/ui/invocations?service=Notes")
    row = page.locator(f'#invocations tr[data-id="{invocation_id}"]')
    assert row.count() == 1
    assert "draft" in row.inner_text() and "drafting" in row.inner_text()
    page.goto(f"{console.node.admin}/ui/invocations")
    _shot(page, "invocations")
    page.locator(f'#invocations tr[data-id="{invocation_id}"] a').first.click()
    page.wait_for_url(f"**/ui/invocations/{invocation_id}")
    entries = page.locator("#timeline li.entry")
    types = [entries.nth(i).get_attribute("data-type") for i in range(entries.count())]
    assert types == ["input", "run", "call", "set_state", "call"], types
    shout = entries.nth(1).inner_text()
    assert "shout" in shout and "completed" in shout
    assert json.dumps(XSS.upper()) in shout  # the step's value, as JSON text
    assert "Greeter/greet" in entries.nth(2).inner_text()
    assert "completed" in entries.nth(2).inner_text()
    waiting = entries.nth(4)
    assert "Naps/nap" in waiting.inner_text() and "waiting" in waiting.inner_text()
    assert page.evaluate("window.__xss") is None
    _shot(page, "invocation")
    # The call it waits for links to the callee, whose page links back to its caller.
    callee_id = waiting.locator("a.callee").inner_text()
    waiting.locator("a.callee").click()
    page.wait_for_url(f"**/ui/invocations/{callee_id}")
    assert page.locator("#callers a").inner_text() == invocation_id
    sleep = page.locator('#timeline li.entry[data-type="sleep"]')
    _wait(lambda: sleep.count() == 1 or page.reload() is None)
    assert "waiting" in sleep.inner_text()
    # (A kill takes the calls it waits for with it.)
    assert _http("PATCH", f"{console.node.admin}/invocations/{invocation_id}/kill")[0] == 200
    _wait(lambda: (_status(console, callee_id) or {}).get("status") in (None, "completed"))


def test_cancel_from_the_console_cancels_a_sleeping_invocation(
    console: Cluster, browser_page: Any
) -> None:
    page = browser_page
    invocation_id = _send(console.node.ingress, "/Naps/nap", 600, "cancel-1")
    _wait(lambda: _sleeping(console, invocation_id))
    page.goto(f"{console.node.admin}/ui/invocations/{invocation_id}")
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator('button[data-action="cancel"]').click()
    result = page.locator("#action-result .action-result")
    result.wait_for()
    assert dialogs == [f"Cancel invocation {invocation_id}?"]
    assert "Cancel" in result.inner_text() and invocation_id in result.inner_text()
    _shot(page, "cancelled")
    done = _wait(
        lambda: (s := _status(console, invocation_id)) and s["status"] == "completed" and s
    )
    assert done["result"]["failure"]["code"] == 409, done


def test_a_state_edit_is_what_the_next_call_sees(console: Cluster, browser_page: Any) -> None:
    page = browser_page
    ingress, admin = console.node.ingress, console.node.admin
    assert _http("POST", f"{ingress}/Counter/edited/add", 5)[:2] == (200, 5)
    page.goto(f"{admin}/ui/state?service=Counter&key=edited")
    page.get_by_label("value of count").fill("41")
    page.get_by_label("new entry name").fill("label")
    page.get_by_label("new entry value").fill('"the answer, almost"')
    page.locator("#save").click()
    page.wait_for_url("**/ui/state?*saved=*")
    assert "saved through the log" in page.locator("#notice").inner_text()
    _shot(page, "state-edited")
    # The next call of the key sees the edit (it went through the log, like a handler's write).
    assert _http("POST", f"{ingress}/Counter/edited/add", 1)[:2] == (200, 42)
    _, state, _ = _http("GET", f"{admin}/services/Counter/state/edited")
    assert state["state"] == {"count": 42, "label": "the answer, almost"}

    # An edit made on a page loaded before another change is refused, and changes nothing.
    page.goto(f"{admin}/ui/state?service=Counter&key=edited")
    assert _http("POST", f"{ingress}/Counter/edited/add", 1)[:2] == (200, 43)
    page.get_by_label("value of count").fill("0")
    page.get_by_label("delete label").check()
    page.locator("#save").click()
    notice = page.locator("#notice")
    notice.wait_for()
    assert "changed meanwhile" in notice.inner_text()
    assert page.get_by_label("value of count").input_value() == "43"  # the current state
    _, state, _ = _http("GET", f"{admin}/services/Counter/state/edited")
    assert state["state"] == {"count": 43, "label": "the answer, almost"}

    # Bad JSON is refused before anything is sent.
    page.get_by_label("value of count").fill("{not json")
    page.locator("#save").click()
    notice.wait_for()
    assert "is not JSON" in notice.inner_text()
    assert _http("GET", f"{admin}/services/Counter/state/edited")[1]["state"]["count"] == 43


def test_a_script_value_is_shown_as_text(console: Cluster, browser_page: Any) -> None:
    page = browser_page
    alerts: list[str] = []

    def dismiss(dialog: Any) -> None:
        alerts.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    status, _, _ = _http("POST", f"{console.node.ingress}/Counter/xss/put", {"note": XSS})
    assert status == 200
    page.goto(f"{console.node.admin}/ui/state?service=Counter&key=xss")
    # Shown as the text of the edit form's value (it even tries to close the textarea).
    assert page.get_by_label("value of note").input_value() == json.dumps(XSS)
    assert page.evaluate("window.__xss") is None
    assert page.locator("#state script, #state img").count() == 0
    assert alerts == []
    _shot(page, "state")
    page.goto(f"{console.node.admin}/ui/subscriptions")
    _shot(page, "subscriptions")


def test_the_overview_lists_services_and_partitions(console: Cluster, browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{console.node.admin}/ui/")
    services = page.locator("#services").inner_text()
    for name in ("Naps", "Notes", "Counter", "Greeter"):
        assert name in services
    assert page.locator("#partitions tbody tr").count() == 4
    assert page.locator("#deployments tbody tr").count() == 1
    counts = page.locator("#counts").inner_text()
    assert "suspended" in counts and "completed" in counts
    # Once the node has sampled its throughput a few times (every 2 s), the chart has a line.
    chart = page.locator("#throughput polyline")
    _wait(lambda: chart.count() == 1 or page.reload() is None)
    _shot(page, "overview")
