"""Serialization of handler inputs/outputs, state, step results and promise values.

JSON everywhere. With a type hint, values decode into that type: msgspec Structs, dataclasses,
TypedDicts, builtins and typing constructs through msgspec; pydantic models through their own JSON
methods (pydantic is optional and never imported here). Fields left out are accepted where
restate-sdk accepts them (``sdk._typed_json``). ``None`` is the empty payload.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec

from sdk import _typed_json
from sdk._typed_json import is_pydantic_model
from sdk.errors import TerminalError

T = TypeVar("T")

__all__ = [
    "BytesSerde",
    "DefaultSerde",
    "JsonSerde",
    "MsgspecJsonSerde",
    "PydanticJsonSerde",
    "Serde",
]


class Serde(Protocol[T]):
    """Turns values into bytes and back."""

    def serialize(self, obj: T | None) -> bytes: ...

    def deserialize(self, buf: bytes) -> T | None: ...


def _encode_hook(obj: Any) -> Any:
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # a pydantic model
        return obj.model_dump(mode="json")
    raise NotImplementedError(f"cannot serialize a {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_encode_hook)


class JsonSerde(Generic[T]):
    """JSON, decoding into ``type_hint`` when one is given."""

    @overload
    def __init__(self: JsonSerde[Any], type_hint: None = None) -> None: ...

    @overload
    def __init__(self, type_hint: type[T]) -> None: ...

    @overload
    def __init__(self, type_hint: Any) -> None: ...

    def __init__(self, type_hint: Any = None) -> None:
        self.type_hint = type_hint

    def serialize(self, obj: T | None) -> bytes:
        if obj is None:
            return b""
        try:
            return _encoder.encode(obj)
        except (TypeError, NotImplementedError) as exc:
            raise TerminalError(f"cannot serialize {type(obj).__name__}: {exc}", 500) from exc

    def deserialize(self, buf: bytes) -> T | None:
        if not buf:
            return None
        tpe = self.type_hint
        try:
            if tpe is None or tpe is Any:
                return msgspec.json.decode(buf)  # type: ignore[no-any-return]
            if is_pydantic_model(tpe):
                return tpe.model_validate_json(buf)  # type: ignore[no-any-return]
            return _typed_json.decode(buf, tpe)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, ValueError) as exc:
            name = getattr(tpe, "__name__", str(tpe))
            raise TerminalError(f"cannot decode the value as {name}: {exc}", 400) from exc


class BytesSerde:
    """Raw bytes, passed through (``generic_call``/``generic_send`` arguments and results)."""

    def serialize(self, obj: bytes | None) -> bytes:
        return obj or b""

    def deserialize(self, buf: bytes) -> bytes:
        return buf


DefaultSerde = JsonSerde


class PydanticJsonSerde(JsonSerde[T]):
    """restate-sdk's serde of one pydantic model: ``JsonSerde`` with the model as its type hint."""

    def __init__(self, model: type[T]) -> None:
        super().__init__(model)


class MsgspecJsonSerde(JsonSerde[T]):
    """restate-sdk's serde of one msgspec type: ``JsonSerde`` with the type as its type hint."""

    def __init__(self, model: type[T]) -> None:
        super().__init__(model)


def serde_for(serde: Serde[Any] | None, type_hint: Any) -> Serde[Any]:
    """The serde to use when a caller may pass an explicit serde, a type hint, both or neither."""
    if serde is not None and not (isinstance(serde, JsonSerde) and serde.type_hint is None):
        return serde
    return JsonSerde(type_hint)
