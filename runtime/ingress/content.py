"""Request bodies and response content types, checked and set as Restate's ingress does.

A handler's manifest says what body it takes (``InputRules``) and what its output is
(``OutputRules``). A request passes when one of its rules passes: "no body and no content-type"
(unless the input is required) or "a content-type matching the accepted one" (plus a non-empty
body for a JSON value). Otherwise the answer is 400 with the last rule's reason, worded as Restate
words it, so that clients see the same messages.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from runtime.metadata import InputRules, OutputRules

VALIDATION_PREFIX = "input validation error: "


class InputRejected(Exception):
    """The request body or content-type does not fit the handler (HTTP 400)."""


def check_input(rules: InputRules, content_type: str | None, body: bytes) -> None:
    """Raise ``InputRejected`` unless the request fits one of the handler's rules."""
    reason = "Bad configuration of the input validation rules"
    if not rules.required:
        if not body and content_type is None:
            return
        shown = "None" if content_type is None else f'Some("{content_type}")'
        reason = (
            f"Expected body and content-type to be empty, but wasn't with content-type '{shown}'"
        )
    if rules.content_type is not None:
        reason_or_none = _check_content(rules, rules.content_type, content_type, body)
        if reason_or_none is None:
            return
        reason = reason_or_none
    raise InputRejected(VALIDATION_PREFIX + reason)


def _check_content(
    rules: InputRules, accept: str, content_type: str | None, body: bytes
) -> str | None:
    if content_type is None:
        return "Empty content-type"
    if not _matches(accept, content_type):
        return f"Content-type '{content_type}' does not match '{_display(accept)}'"
    if rules.non_empty and not body:
        return "Empty body not allowed"
    if rules.json and body:
        # Cairn refuses malformed JSON here, before anything is journaled (Restate lets it
        # through and the SDK fails the invocation): see README, "Where Cairn differs".
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return f"the body is not valid JSON: {exc}"
    return None


def _matches(accept: str, content_type: str) -> bool:
    wanted_type, _, wanted_subtype = accept.strip().partition("/")
    if wanted_type == "*":
        return True
    media = content_type.split(";", 1)[0].strip()
    major, slash, minor = media.partition("/")
    if not slash:
        return False
    return major == wanted_type and (wanted_subtype == "*" or minor == wanted_subtype)


def _display(accept: str) -> str:
    major, _, minor = accept.strip().partition("/")
    return "*/*" if major == "*" else f"{major}/{minor}"


def output_content_type(rules: OutputRules, body: bytes) -> str | None:
    """The response's content-type: none for an empty output unless the handler asks for it."""
    if rules.content_type is None or (not body and not rules.set_content_type_if_empty):
        return None
    return rules.content_type


def rfc3339(ms: int) -> str:
    """A UTC instant as Restate prints it: seconds, or nine fractional digits when not whole."""
    instant = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = ms % 1000
    return f"{instant}Z" if fraction == 0 else f"{instant}.{fraction * 1_000_000:09d}Z"
