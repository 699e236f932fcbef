"""JSON is the one wire format for arguments and results, on every backend."""

from __future__ import annotations

import json
from typing import Any

from .errors import ConfigurationError, NotSerializable, PayloadTooLarge

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""Bytes of JSON (arguments and keyword arguments) one submission may carry; ``max_payload=0`` lifts it."""


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON; raise :class:`NotSerializable` otherwise."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(f"value is not JSON-serialisable: {exc}") from None


def loads(data: str | bytes) -> Any:
    return json.loads(data)


def check_arguments(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise a :class:`NotSerializable` that names the bad argument, before anything is enqueued."""
    for i, value in enumerate(args):
        _check(task_name, f"positional argument {i}", value)
    for key, value in kwargs.items():
        _check(task_name, f"keyword argument {key!r}", value)


def check_result(task_name: str, value: Any) -> None:
    _check(task_name, "return value", value)


def _check(task_name: str, what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(
            f"{what} of task {task_name!r} is not JSON-serialisable "
            f"({type(value).__module__}.{type(value).__qualname__}: {exc}). "
            "anytask sends only JSON on every backend: pass plain dicts, lists, str, int, float, "
            "bool or None (e.g. an id instead of an object, an ISO string instead of a datetime)."
        ) from None


def parse_max_payload(raw: str | int | None) -> int:
    """The ``max_payload`` URL parameter or Client argument: bytes, ``0`` for no limit."""
    if raw is None:
        return DEFAULT_MAX_PAYLOAD
    try:
        limit = int(raw)
        if limit < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(f"max_payload={raw!r} must be a number of bytes >= 0 (0: no limit; "
                                 f"default {DEFAULT_MAX_PAYLOAD})") from None
    return limit


def check_payload_size(task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    """Raise :class:`PayloadTooLarge` if the arguments' JSON is over ``limit`` bytes (0: no limit)."""
    if not limit:
        return
    size = len(json.dumps([args, kwargs], separators=(",", ":"), allow_nan=False).encode())
    if size > limit:
        raise PayloadTooLarge(
            f"the arguments of task {task_name!r} are {size} bytes of JSON, over the limit of {limit} bytes; "
            "pass a reference instead (a file path, an object-store key, a database id), or raise the limit "
            "with ?max_payload=<bytes> in the URL or connect(url, max_payload=<bytes>) (0: no limit)"
        )
