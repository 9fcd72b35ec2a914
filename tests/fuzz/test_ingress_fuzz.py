"""Property: whatever arrives at the ingress (paths, headers, query strings, bodies), the answer
is never a 5xx but 503, and afterwards every partition still serves (DESIGN §11)."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import assume, given
from hypothesis import strategies as st

from partition_processor.ids import awakeable_id, make_invocation_id
from tests.e2e.conftest import Cluster
from tests.fuzz.support import (
    FUZZ,
    assert_clear_answer,
    build_request,
    every_partition_serves,
    raw_http,
)

VALID_ID = make_invocation_id(2**63, bytes(16))
IDS = [
    VALID_ID,
    "inv_-" + "0" * 47,
    "inv_+" + "f" * 47,
    "inv_" + "0_" * 24,
    "inv_ " + "1" * 47,
    VALID_ID.upper(),
    awakeable_id("inv_-" + "0" * 47, 1),
    awakeable_id(VALID_ID, 2**32 - 1),
    "sign_1" + "A" * 75,
    "sign_1",
]

# Text with everything percent-encoding can carry, plus the ids above.
segments = st.one_of(
    st.sampled_from(IDS),
    st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe="")),
    st.binary(min_size=1, max_size=20).map(lambda b: quote(b, safe="")),
    st.integers(1, 6000).map(lambda n: "k" * n),
)
paths = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                "/Poison/echo_back",
                "/Poison/echo",
                "/Counter/{0}/add",
                "/Counter/{0}/get",
                "/Poison/{0}",
                "/{0}/{1}",
                "/{0}/{1}/{0}",
                "/restate/invocation/{0}/attach",
                "/restate/invocation/{0}/output",
                "/restate/awakeables/{0}/resolve",
                "/restate/awakeables/{0}/reject",
                "/restate/workflow/{0}/{1}/output",
                "/restate/invocation/Poison/echo/{0}/output",
                "/restate/health",
            ]
        ),
        segments,
        segments,
    ).map(lambda t: t[0].format(t[1], t[2])),
)
queries = st.one_of(
    st.just(""),
    st.tuples(
        st.sampled_from(["/send?delay=", "/send?", "?delay=", "/send?delay=P"]),
        st.one_of(
            st.sampled_from(["9" * 400 + "s", "1e999s", "-5s", "10 s", "PT", "P1W", "0ms", ""]),
            st.text(max_size=30).map(lambda s: quote(s, safe="")),
            st.integers(0, 10**30).map(lambda n: f"{n}ms"),
        ),
    ).map(lambda t: t[0] + t[1]),
)
header_values = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=60).map(lambda s: s.replace("\r", "").replace("\n", "").encode()),
    st.integers(1, 5000).map(lambda n: b"i" * n),
)
headers = st.lists(
    st.tuples(
        st.sampled_from([b"idempotency-key", b"x-custom", b"content-type", b"x-restate-id"]),
        header_values,
    ),
    max_size=4,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(b""),
)


@FUZZ
@given(
    method=st.sampled_from([b"POST", b"GET", b"PUT", b"PATCH", b"DELETE"]),
    path=paths,
    query=queries,
    header_list=headers,
    body=bodies,
)
def test_the_ingress_answers_every_request_clearly(
    node: Cluster,
    method: bytes,
    path: str,
    query: str,
    header_list: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    target = (path + query).encode()
    status, answer = raw_http(
        node.node.ingress_port, build_request(method, target, header_list, body)
    )
    assert_clear_answer(status, answer, (method, target, header_list, body[:100]))


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=300))
def test_malformed_http_is_refused_without_a_traceback(node: Cluster, garbage: bytes) -> None:
    # Only empty lines is no request yet (HTTP skips empty lines before the request line): the
    # server waits for one, and the header deadline closes such a connection
    # (tests/unit/runtime/test_header_deadline.py).
    assume(garbage.strip(b"\r\n"))
    status, _ = raw_http(node.node.ingress_port, garbage + b"\r\n\r\n")
    assert 400 <= status < 500 or status == 505


def test_after_the_fuzz_every_partition_serves(node: Cluster) -> None:
    every_partition_serves(node.node.ingress)
    log = node.node.process.output()
    assert "Traceback" not in log, log[-5000:]
