"""The ingress's input rules and output content types, worded as Restate's ingress words them."""

from __future__ import annotations

import pytest

from runtime.ingress.content import InputRejected, check_input, output_content_type, rfc3339
from runtime.metadata import InputRules, OutputRules

NO_INPUT = InputRules(content_type=None)
JSON_INPUT = InputRules(content_type="application/json", non_empty=True, json=True)
RAW_INPUT = InputRules(content_type="*/*", non_empty=True)
TEXT_INPUT = InputRules(content_type="text/*", non_empty=True)
LEGACY = InputRules()  # a manifest that declares nothing: Restate's defaults


@pytest.mark.parametrize(
    ("rules", "content_type", "body"),
    [
        (NO_INPUT, None, b""),
        (JSON_INPUT, None, b""),
        (JSON_INPUT, "application/json", b'{"a": 1}'),
        (JSON_INPUT, "application/json; charset=utf-8", b"1"),
        (RAW_INPUT, "application/octet-stream", b"\x00\xff"),
        (RAW_INPUT, "application/json", b"{not json"),
        (TEXT_INPUT, "text/plain", b"hi"),
        (LEGACY, "anything/else", b""),
        (LEGACY, None, b""),
    ],
)
def test_accepted(rules: InputRules, content_type: str | None, body: bytes) -> None:
    check_input(rules, content_type, body)


@pytest.mark.parametrize(
    ("rules", "content_type", "body", "message"),
    [
        (
            NO_INPUT,
            "application/x-www-form-urlencoded",
            b"{}",
            "Expected body and content-type to be empty, but wasn't with content-type "
            "'Some(\"application/x-www-form-urlencoded\")'",
        ),
        (
            NO_INPUT,
            None,
            b"{}",
            "Expected body and content-type to be empty, but wasn't with content-type 'None'",
        ),
        (JSON_INPUT, None, b'"x"', "Empty content-type"),
        (
            JSON_INPUT,
            "text/plain",
            b'"x"',
            "Content-type 'text/plain' does not match 'application/json'",
        ),
        (JSON_INPUT, "application/json", b"", "Empty body not allowed"),
        (JSON_INPUT, "applicationjson", b"1", "Content-type 'applicationjson' does not match"),
        (
            TEXT_INPUT,
            "application/json",
            b"1",
            "Content-type 'application/json' does not match 'text/*'",
        ),
        (
            InputRules(required=True, content_type=None),
            None,
            b"",
            "Bad configuration of the input validation rules",
        ),
    ],
)
def test_refused(rules: InputRules, content_type: str | None, body: bytes, message: str) -> None:
    with pytest.raises(InputRejected) as refused:
        check_input(rules, content_type, body)
    assert str(refused.value).startswith("input validation error: " + message)


def test_malformed_json_is_refused_for_json_handlers_only() -> None:
    with pytest.raises(InputRejected, match="the body is not valid JSON"):
        check_input(JSON_INPUT, "application/json", b'{"a": ')
    check_input(RAW_INPUT, "application/json", b'{"a": ')


def test_output_content_type() -> None:
    assert output_content_type(OutputRules(), b"1") == "application/json"
    assert output_content_type(OutputRules(), b"") is None
    assert output_content_type(OutputRules("text/plain", True), b"") == "text/plain"
    assert output_content_type(OutputRules(None), b"x") is None


def test_rfc3339_as_restate_prints_it() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_518_563_312_123) == "2018-02-13T23:08:32.123000000Z"
