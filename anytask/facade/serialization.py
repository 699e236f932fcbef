"""JSON is the one wire format for arguments and results, on every backend."""

from __future__ import annotations

import json
from typing import Any

from .errors import NotSerializable


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
