"""Property: admin requests with any ids, keys, URIs and bodies get a clear 4xx, never a 5xx
(DESIGN §11), and the node keeps serving every partition."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.conftest import Cluster
from tests.fuzz.support import (
    FUZZ,
    assert_clear_answer,
    build_request,
    every_partition_serves,
    raw_http,
)
from tests.fuzz.test_ingress_fuzz import IDS, bodies, segments

# Only 127.0.0.1 hosts: discovery of a random host name would wait for DNS.
uris = st.one_of(
    st.integers(-10, 10**6).map(lambda port: f"http://127.0.0.1:{port}"),
    st.sampled_from(["http://[::1", "ftp://127.0.0.1:1", "127.0.0.1", "http://127.0.0.1:x", ""]),
    st.text(max_size=30).map(lambda s: "http://127.0.0.1:" + s),
    st.text(max_size=30).filter(lambda s: ":" not in s),
)
register_bodies = st.one_of(
    uris.map(lambda uri: json.dumps({"uri": uri}).encode()),
    bodies,
)
admin_paths = st.tuples(
    st.sampled_from(
        [
            "/invocations/{0}",
            "/invocations/{0}/cancel",
            "/invocations/{0}/kill",
            "/invocations/{0}/purge",
            "/services/{1}",
            "/services/Counter/state/{1}",
            "/services/{1}/state/{0}",
            "/deployments/{1}",
            "/invocations?status={1}",
            "/{1}",
            # The web console (README "Web console"): HTML pages, and POSTs without the token.
            "/ui/invocations/{0}",
            "/ui/invocations/{0}/{1}",
            "/ui/invocations?service={1}&key={0}&status={1}&page={1}",
            "/ui/state?service=Counter&key={1}",
            "/ui/state?service={1}&key={0}",
            "/ui/static/{1}",
        ]
    ),
    st.one_of(st.sampled_from(IDS), segments),
    segments,
).map(lambda t: t[0].format(t[1], t[2]))


@FUZZ
@given(body=register_bodies)
def test_registering_any_deployment_gets_a_clear_answer(node: Cluster, body: bytes) -> None:
    request = build_request(
        b"POST", b"/deployments", [(b"content-type", b"application/json")], body
    )
    status, answer = raw_http(node.node.admin_port, request)
    assert_clear_answer(status, answer, body[:200])


@FUZZ
@given(
    method=st.sampled_from([b"GET", b"PATCH", b"POST", b"DELETE"]),
    path=admin_paths,
    body=st.sampled_from([b"", b"{}", b"[" * 5000]),
)
def test_admin_requests_get_a_clear_answer(
    node: Cluster, method: bytes, path: str, body: bytes
) -> None:
    target = quote(path, safe="/?=%").encode()
    status, answer = raw_http(node.node.admin_port, build_request(method, target, [], body))
    assert_clear_answer(status, answer, (method, target))


def test_after_the_fuzz_every_partition_serves(node: Cluster) -> None:
    every_partition_serves(node.node.ingress)
    log = node.node.process.output()
    assert "Traceback" not in log, log[-5000:]
