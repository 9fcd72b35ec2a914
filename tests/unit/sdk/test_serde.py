"""Decoding inputs, results and state the way restate-sdk accepts them: fields left out."""

# Written as restate-sdk users write it: ``Optional[X]`` on purpose.
# ruff: noqa: UP045

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, NotRequired, Optional, TypedDict

import msgspec
import pydantic
import pytest

import sdk as restate
from sdk.definitions import handler_of
from sdk.serde import JsonSerde, serde_for


class ProxyRequest(TypedDict):
    """Restate's own test-services input: a total TypedDict with Optional fields left out."""

    serviceName: str
    virtualObjectKey: Optional[str]
    handlerName: str
    message: Iterable[int]
    delayMillis: Optional[int]
    idempotencyKey: Optional[str]


class Partial(TypedDict, total=False):
    name: str
    count: int


class WithNotRequired(TypedDict):
    name: str
    note: NotRequired[str]


class Batch(TypedDict):
    label: str
    inner: ProxyRequest
    requests: list[ProxyRequest]


@dataclasses.dataclass
class Order:
    item: str
    quantity: int = 1
    coupon: Optional[str] = None
    gift_note: str | None = dataclasses.field(default=None)
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NoDefaults:
    item: str
    comment: Optional[str]  # dacite (restate-sdk's dataclass decoder) fills None


class Point(msgspec.Struct):
    x: int
    y: int = 0
    label: Optional[str] = None


class Profile(pydantic.BaseModel):
    name: str
    age: Optional[int] = None
    email: str | None = None


def decode(tpe: Any, body: bytes) -> Any:
    return JsonSerde(tpe).deserialize(body)


def test_total_typeddict_with_optional_fields_left_out() -> None:
    body = b'{"serviceName": "S", "handlerName": "h", "message": [1, 2]}'
    request = decode(ProxyRequest, body)
    assert request == {"serviceName": "S", "handlerName": "h", "message": [1, 2]}
    assert "delayMillis" not in request  # absent, as json.loads leaves it in restate-sdk
    assert request.get("delayMillis") is None


def test_typeddict_optional_field_given_is_checked() -> None:
    body = b'{"serviceName": "S", "handlerName": "h", "message": [], "delayMillis": 50}'
    assert decode(ProxyRequest, body)["delayMillis"] == 50
    with pytest.raises(restate.TerminalError) as caught:
        decode(
            ProxyRequest,
            b'{"serviceName": "S", "handlerName": "h", "message": [], "delayMillis": "soon"}',
        )
    assert caught.value.status_code == 400
    assert "$.delayMillis" in caught.value.message


def test_typeddict_required_field_left_out_is_a_clear_400() -> None:
    with pytest.raises(restate.TerminalError) as caught:
        decode(ProxyRequest, b'{"handlerName": "h", "message": []}')
    assert caught.value.status_code == 400
    assert "serviceName" in caught.value.message
    assert "ProxyRequest" in caught.value.message


def test_total_false_and_not_required() -> None:
    assert decode(Partial, b"{}") == {}
    assert decode(Partial, b'{"count": 3}') == {"count": 3}
    assert decode(WithNotRequired, b'{"name": "a"}') == {"name": "a"}
    with pytest.raises(restate.TerminalError):
        decode(WithNotRequired, b'{"note": "a"}')


def test_nested_typeddicts_and_lists_of_them() -> None:
    body = (
        b'{"label": "L", "inner": {"serviceName": "S", "handlerName": "h", "message": []},'
        b' "requests": [{"serviceName": "A", "handlerName": "x", "message": [1]},'
        b' {"serviceName": "B", "handlerName": "y", "message": [], "idempotencyKey": "k"}]}'
    )
    batch = decode(Batch, body)
    assert batch["inner"]["serviceName"] == "S"
    assert [r["serviceName"] for r in batch["requests"]] == ["A", "B"]
    assert batch["requests"][1]["idempotencyKey"] == "k"
    assert decode(list[ProxyRequest], b'[{"serviceName": "S", "handlerName": "h", "message": []}]')
    with pytest.raises(restate.TerminalError) as caught:
        decode(
            Batch,
            b'{"label": "L", "inner": {"serviceName": "S", "handlerName": "h",'
            b' "message": []}, "requests": [{"serviceName": "A", "message": []}]}',
        )
    assert "$.requests[0]" in caught.value.message


def test_typeddict_keeps_unknown_keys() -> None:
    assert decode(Partial, b'{"name": "n", "extra": true}') == {"name": "n", "extra": True}


def test_dataclass_defaults_and_optional_fields() -> None:
    assert decode(Order, b'{"item": "tea"}') == Order("tea")
    assert decode(Order, b'{"item": "tea", "quantity": 2, "coupon": "C"}') == Order("tea", 2, "C")
    assert decode(NoDefaults, b'{"item": "tea"}') == NoDefaults("tea", None)
    with pytest.raises(restate.TerminalError) as caught:
        decode(Order, b'{"quantity": 2}')
    assert "item" in caught.value.message


def test_struct_and_pydantic_defaults() -> None:
    assert decode(Point, b'{"x": 1}') == Point(1)
    assert decode(Profile, b'{"name": "n"}') == Profile(name="n")
    assert decode(list[Profile], b'[{"name": "n"}]') == [Profile(name="n")]
    with pytest.raises(restate.TerminalError):
        decode(Profile, b'{"age": 3}')


def test_optional_top_level_and_unsupported_hints() -> None:
    assert decode(Optional[ProxyRequest], b"null") is None
    assert decode(int | None, b"3") == 3
    # restate-sdk keeps the plain JSON value when it cannot use the hint; so do we
    assert decode(Iterable, b"[1]") == [1]


def test_handler_input_and_call_result_types_come_from_annotations() -> None:
    svc = restate.Service("Proxy")

    @svc.handler()
    async def call(ctx: restate.Context, req: ProxyRequest) -> list[ProxyRequest]:
        return [req]

    handler = handler_of(call)
    body = b'{"serviceName": "S", "handlerName": "h", "message": []}'
    assert handler.input_serde.deserialize(body) == {
        "serviceName": "S",
        "handlerName": "h",
        "message": [],
    }
    assert handler.output_serde.deserialize(b"[" + body + b"]") == [
        {"serviceName": "S", "handlerName": "h", "message": []}
    ]


def test_type_hint_serdes_of_state_and_steps() -> None:
    # ctx.get(type_hint=), ctx.run(type_hint=), RunOptions(type_hint=) all resolve through serde_for
    assert serde_for(None, Order).deserialize(b'{"item": "tea"}') == Order("tea")
    assert serde_for(restate.DefaultSerde(), Partial).deserialize(b"{}") == {}


class Unresolvable(TypedDict):
    ref: NoSuchType  # type: ignore[name-defined]  # noqa: F821 - unresolvable on purpose
    count: int


def test_unresolvable_annotations_keep_the_value_as_decoded() -> None:
    assert decode(Unresolvable, b'{"ref": {"x": 1}, "count": "two"}') == {
        "ref": {"x": 1},
        "count": "two",
    }
