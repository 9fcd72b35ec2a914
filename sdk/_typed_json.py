"""Decoding JSON into a type hint the way restate-sdk accepts it.

restate-sdk decodes a ``TypedDict`` (or any hint it has no decoder for) with plain ``json.loads``
and a dataclass with dacite, which fills an ``Optional`` field left out with ``None``. Code written
for it leaves such fields out (Restate's own ``ProxyRequest`` has ``delayMillis: Optional[int]`` in
a total TypedDict), so a strict decoder would refuse inputs restate-sdk accepts. Here:

- a TypedDict key may be left out when it is ``NotRequired``, in a ``total=False`` dict, or when its
  type admits ``None`` (the key then stays absent, as with ``json.loads``); unknown keys are kept;
- a dataclass field may be left out when it has a default, or when its type admits ``None`` (then
  it is ``None``, as with dacite);
- msgspec Structs, builtins, datetimes... are checked by msgspec (``msgspec.convert``), pydantic
  models by their own ``model_validate``;
- a hint that msgspec cannot handle leaves the value as decoded, as restate-sdk does.

Deliberately stricter than restate-sdk: a key whose type does not admit ``None`` must be present,
and present values must match their types, so bad input gets a 400 naming the field instead of a
``KeyError`` inside the handler that would be retried forever.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import types
import typing
from typing import Any, NotRequired, Required, Union, get_args, get_origin, is_typeddict

import msgspec

_LIST_ORIGINS = frozenset(
    {
        list,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Iterable,
        collections.abc.Collection,
    }
)
_DICT_ORIGINS = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})
_UNION_ORIGINS = frozenset({Union, types.UnionType})


def is_pydantic_model(tpe: Any) -> bool:
    return isinstance(tpe, type) and hasattr(tpe, "model_validate_json")


def decode(buf: bytes, tpe: Any) -> Any:
    """Decode JSON ``buf`` as ``tpe``; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    if _hashable(tpe) and not _needs_walk(tpe):
        try:
            return msgspec.json.decode(buf, type=tpe)
        except TypeError:  # a hint msgspec does not support: the plain JSON value, as restate-sdk
            return msgspec.json.decode(buf)
    return _convert(msgspec.json.decode(buf), tpe, "$")


@functools.cache
def _needs_walk(tpe: Any) -> bool:
    """Whether ``tpe`` reaches a TypedDict, dataclass or pydantic model through typing args."""
    if is_typeddict(tpe) or is_pydantic_model(tpe):
        return True
    if isinstance(tpe, type) and dataclasses.is_dataclass(tpe):
        return True
    return any(_needs_walk(arg) for arg in get_args(tpe) if _hashable(arg))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def admits_none(tpe: Any) -> bool:
    if tpe is None or tpe is type(None) or tpe is Any:
        return True
    if get_origin(tpe) is typing.Annotated:
        return admits_none(get_args(tpe)[0])
    return get_origin(tpe) in _UNION_ORIGINS and any(admits_none(a) for a in get_args(tpe))


def _invalid(message: str, path: str) -> msgspec.ValidationError:
    return msgspec.ValidationError(f"{message} - at `{path}`")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "str", bool: "bool", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _convert(value: Any, tpe: Any, path: str) -> Any:
    if tpe is Any or tpe is object or isinstance(tpe, typing.TypeVar):
        return value
    origin = get_origin(tpe)
    args = get_args(tpe)
    if origin is typing.Annotated:
        return _convert(value, args[0], path)
    if origin in _UNION_ORIGINS:
        if value is None and admits_none(tpe):
            return None
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1:
            return _convert(value, others[0], path)
        return _leaf(value, tpe, path)
    if is_typeddict(tpe):
        return _typed_dict(value, tpe, path)
    if isinstance(tpe, type) and dataclasses.is_dataclass(tpe):
        return _dataclass(value, tpe, path)
    if is_pydantic_model(tpe):
        try:
            return tpe.model_validate(value)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise _invalid(str(exc), path) from exc
    if origin in _LIST_ORIGINS and args and isinstance(value, list):
        return [_convert(item, args[0], f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and isinstance(value, list):
        return tuple(_convert(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if origin in _DICT_ORIGINS and len(args) == 2 and isinstance(value, dict):
        return {
            _leaf(key, args[0], path): _convert(item, args[1], f"{path}[{key!r}]")
            for key, item in value.items()
        }
    return _leaf(value, tpe, path)


def _leaf(value: Any, tpe: Any, path: str) -> Any:
    try:
        return msgspec.convert(value, tpe)
    except TypeError:  # not a type msgspec handles: keep the JSON value, as restate-sdk does
        return value
    except msgspec.ValidationError as exc:
        message = str(exc)
        if " - at `$" in message:  # msgspec's path is relative to the value it was given
            raise msgspec.ValidationError(message.replace(" - at `$", f" - at `{path}", 1)) from exc
        raise _invalid(message, path) from exc


@functools.cache
def _typed_dict_fields(tpe: Any) -> tuple[tuple[str, Any, bool], ...]:
    """(key, type, required) per key; Python 3.11 misreads NotRequired under postponed
    annotations, so the wrappers are read from the hints themselves."""
    fields = []
    for key, hint in _type_hints(tpe, include_extras=True).items():
        required = key in tpe.__required_keys__
        while get_origin(hint) in (Required, NotRequired):
            required = get_origin(hint) is Required
            hint = get_args(hint)[0]
        fields.append((key, hint, required and not admits_none(hint)))
    return tuple(fields)


def _type_hints(tpe: Any, include_extras: bool = False) -> dict[str, Any]:
    """The resolved annotations of ``tpe``; unresolvable ones (a forward reference to a name that
    does not exist at run time) are taken as ``Any``, so the value is kept as decoded."""
    try:
        return typing.get_type_hints(tpe, include_extras=include_extras)
    except (NameError, TypeError):
        return {name: Any for name in getattr(tpe, "__annotations__", {})}


def _typed_dict(value: Any, tpe: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"Expected `object`, got `{_json_type(value)}`", path)
    result = dict(value)
    for key, hint, required in _typed_dict_fields(tpe):
        if key in value:
            result[key] = _convert(value[key], hint, f"{path}.{key}")
        elif required:
            raise _invalid(f"Object missing required field `{key}`", path)
    return result


@functools.cache
def _dataclass_fields(tpe: Any) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, has_default) per field the constructor takes."""
    hints = _type_hints(tpe)
    return tuple(
        (
            field.name,
            hints.get(field.name, Any),
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING,
        )
        for field in dataclasses.fields(tpe)
        if field.init
    )


def _dataclass(value: Any, tpe: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _invalid(f"Expected `object`, got `{_json_type(value)}`", path)
    arguments: dict[str, Any] = {}
    for name, hint, has_default in _dataclass_fields(tpe):
        if name in value:
            arguments[name] = _convert(value[name], hint, f"{path}.{name}")
        elif admits_none(hint) and not has_default:
            arguments[name] = None
        elif not has_default:
            raise _invalid(f"Object missing required field `{name}`", path)
    try:
        return tpe(**arguments)
    except (TypeError, ValueError) as exc:  # raised by the dataclass's own __post_init__
        raise _invalid(str(exc), path) from exc
