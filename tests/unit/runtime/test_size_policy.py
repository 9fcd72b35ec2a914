"""The size policy and the ingress checks that enforce it (DESIGN §11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import NodeConfig
from runtime.ingress.durations import InvalidDuration, parse_duration_ms
from runtime.ingress.validation import (
    MAX_JSON_DEPTH,
    InvalidRequest,
    check_json,
    check_text,
    forwarded_headers,
    json_depth,
)
from runtime.invoker.discovery import DiscoveryError, grpc_target
from sdk._transport.server import DEFAULT_MAX_MESSAGE_BYTES

POLICY = NodeConfig(data_dir=Path("unused")).size_policy()


def test_the_endpoint_and_the_runtime_agree_on_the_grpc_message_size() -> None:
    assert DEFAULT_MAX_MESSAGE_BYTES == POLICY.message_bytes
    # A replayed call entry (argument and result) and a full body both fit in one message.
    assert POLICY.message_bytes >= 2 * POLICY.entry_bytes + POLICY.headers_bytes
    assert POLICY.record_bytes >= POLICY.body_bytes + POLICY.headers_bytes + 4 * POLICY.key_bytes


def test_a_key_limit_beyond_the_store_key_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="max_key_bytes"):
        NodeConfig(data_dir=Path("unused"), max_key_bytes=70_000)


@given(st.recursive(st.integers() | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)))
def test_json_depth_matches_the_nesting(value: object) -> None:
    def depth(v: object) -> int:
        return 1 + max((depth(x) for x in v), default=0) if isinstance(v, list) else 0

    assert json_depth(json.dumps(value).encode()) == depth(value)


def test_strings_do_not_count_as_nesting() -> None:
    assert json_depth(b'["[[[[", "\\"[[", {"a": "}}}"}]') == 2


def test_deep_json_and_bad_text_are_400() -> None:
    check_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    for body in (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), b"[" * 100_000, b"{"):
        with pytest.raises(InvalidRequest) as refused:
            check_json(body)
        assert refused.value.status == 400
    with pytest.raises(InvalidRequest, match="exceeds the limit"):
        check_text("k" * (POLICY.key_bytes + 1), "the key", POLICY)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        check_text("\udcff", "the key", POLICY)


def test_headers_must_be_utf8_and_within_budget() -> None:
    assert forwarded_headers([("Host", "x"), ("X-A", "b")], POLICY) == [("x-a", "b")]
    with pytest.raises(InvalidRequest, match="not valid UTF-8"):
        forwarded_headers([("x-bad", "\udcff\udcfe")], POLICY)
    with pytest.raises(InvalidRequest) as refused:
        forwarded_headers([(f"x-{i}", "v" * 8000) for i in range(10)], POLICY)
    assert refused.value.status == 431


@pytest.mark.parametrize("text", ["9" * 400 + "s", "1e999s", "99999999999999999999d", "P9999999W"])
def test_overflowing_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration_ms(text)


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:99999", "http://[::1", "http://h:-1", "http://h:x", "ftp://h:1", ""]
)
def test_malformed_deployment_uris_are_refused_with_a_reason(uri: str) -> None:
    with pytest.raises(DiscoveryError, match="HOST:PORT"):
        grpc_target(uri)
