"""Runs `cairn dev examples.demo:app` and makes real invocations against it over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

INGRESS = "http://127.0.0.1:8080"
ADMIN = "http://127.0.0.1:9070"


def call(
    path: str, body: object, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, str, str]:
    # No body: no content-type either (handlers without input refuse one, as in Restate).
    data = json.dumps(body).encode() if body is not None else None
    content_type = {"content-type": "application/json"} if data is not None else {}
    request = urllib.request.Request(
        INGRESS + path, data=data, method=method, headers={**content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers["x-restate-id"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("x-restate-id", "")


def wait_ready(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("demo: cairn dev exited early")
        try:
            with urllib.request.urlopen(ADMIN + "/services", timeout=2) as response:
                if json.loads(response.read())["services"]:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise SystemExit("demo: cairn dev did not become ready")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cairn-demo-") as data_dir:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime.cli",
                "dev",
                "examples.demo:app",
                "--data-dir",
                data_dir,
                "--partitions",
                "4",
            ],
        )
        try:
            wait_ready(process)
            print("\n$ POST /Greeter/greet 'Ada'")
            print("  ->", call("/Greeter/greet", "Ada")[:2])
            for delta in (1, 2, 3):
                print(f"$ POST /Counter/demo/add {delta}")
                print("  ->", call("/Counter/demo/add", delta)[:2])
            print("$ GET /Counter/demo/get")
            print("  ->", call("/Counter/demo/get", None, method="GET")[:2])
            print(
                "$ POST /Checkout/place_order 'order-7' (the payment step fails once, is retried)"
            )
            print("  ->", call("/Checkout/place_order", "order-7")[:2])
            print("$ POST /Counter/demo/add 10 with idempotency-key: demo-1, three times")
            for _ in range(3):
                status, body, invocation_id = call(
                    "/Counter/demo/add", 10, {"idempotency-key": "demo-1"}
                )
                print("  ->", (status, body), invocation_id)
            print("$ POST /Counter/demo/add/send?delay=1s 100 (a delayed one-way call)")
            print("  ->", call("/Counter/demo/add/send?delay=1s", 100)[:2])
            print("  get right away ->", call("/Counter/demo/get", None)[:2])
            time.sleep(1.5)
            print("  get 1.5 s later ->", call("/Counter/demo/get", None)[:2])
            print("$ POST /Signup/ada/run/send 'ada@example.com' (a workflow: waits for a click)")
            print("  ->", call("/Signup/ada/run/send", "ada@example.com")[:2])
            time.sleep(0.5)
            print("$ POST /Signup/ada/stage (no body: the handler takes no input)")
            print("  ->", call("/Signup/ada/stage", None)[:2])
            print("$ GET /restate/workflow/Signup/ada/output (470 while it runs)")
            print("  ->", call("/restate/workflow/Signup/ada/output", None, method="GET")[:2])
            print("$ POST /Signup/ada/click 'link-42' (resolves its durable promise)")
            print("  ->", call("/Signup/ada/click", "link-42")[:2])
            print("$ GET /restate/workflow/Signup/ada/attach")
            print("  ->", call("/restate/workflow/Signup/ada/attach", None, method="GET")[:2])
            print("$ POST /Signup/ada/run 'again' (a workflow runs once per key)")
            print("  ->", call("/Signup/ada/run", "again")[:2])
            print("$ POST /Nope/greet (unknown service)")
            print("  ->", call("/Nope/greet", "x")[:2])
            print("$ POST /Counter/demo/reset '{}' (a handler without input refuses a body)")
            print("  ->", call("/Counter/demo/reset", {})[:2])
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
