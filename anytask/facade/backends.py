"""The table of backends: URL scheme -> adapter class path and the extra that installs it.

Only strings live here, so importing the facade imports no queue library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import MissingDependency, UnknownScheme
from .url import BackendURL

if TYPE_CHECKING:
    from .adapter import Adapter


@dataclass(frozen=True)
class BackendSpec:
    scheme: str
    adapter: str  # "module:Class"
    extra: str  # pip extra
    requires: tuple[str, ...]  # top-level modules that must import
    example: str


BACKENDS: dict[str, BackendSpec] = {
    s.scheme: s
    for s in [
        BackendSpec("memory", "anytask.adapters.memory:MemoryAdapter", "", (), "memory://"),
        BackendSpec("huey+sqlite", "anytask.adapters.huey:HueyAdapter", "huey", ("huey",),
                    "huey+sqlite:///var/tmp/tasks.db"),
        BackendSpec("huey+redis", "anytask.adapters.huey:HueyAdapter", "huey", ("huey", "redis"),
                    "huey+redis://127.0.0.1:6379/0"),
        BackendSpec("rq+redis", "anytask.adapters.rq:RQAdapter", "rq", ("rq", "redis"),
                    "rq+redis://127.0.0.1:6379/0"),
        BackendSpec("celery+redis", "anytask.adapters.celery:CeleryAdapter", "celery", ("celery", "redis"),
                    "celery+redis://127.0.0.1:6379/0"),
        BackendSpec("celery+amqp", "anytask.adapters.celery:CeleryAdapter", "celery", ("celery", "redis"),
                    "celery+amqp://guest:guest@127.0.0.1:5672//?result=redis://127.0.0.1:6379/0"),
        BackendSpec("dramatiq+redis", "anytask.adapters.dramatiq:DramatiqRedisAdapter", "dramatiq",
                    ("dramatiq", "redis"), "dramatiq+redis://127.0.0.1:6379/0"),
        BackendSpec("dramatiq+amqp", "anytask.adapters.dramatiq:DramatiqAmqpAdapter", "dramatiq",
                    ("dramatiq", "pika", "redis"),
                    "dramatiq+amqp://guest:guest@127.0.0.1:5672/?result=redis://127.0.0.1:6379/0"),
        BackendSpec("taskiq+redis", "anytask.adapters.taskiq:TaskiqAdapter", "taskiq",
                    ("taskiq", "taskiq_redis"), "taskiq+redis://127.0.0.1:6379/0"),
        BackendSpec("taskiq+amqp", "anytask.adapters.taskiq:TaskiqAdapter", "taskiq",
                    ("taskiq", "taskiq_aio_pika", "taskiq_redis"),
                    "taskiq+amqp://guest:guest@127.0.0.1:5672/?result=redis://127.0.0.1:6379/0"),
    ]
}


def spec_for(url: BackendURL) -> BackendSpec:
    spec = BACKENDS.get(url.scheme)
    if spec is None:
        valid = ", ".join(f"{s}://" for s in BACKENDS)
        raise UnknownScheme(f"unknown backend scheme {url.scheme!r} in {url.masked!r}; valid schemes: {valid}")
    return spec


def load_adapter_class(spec: BackendSpec) -> type[Adapter]:
    for mod in spec.requires:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise MissingDependency(
                f"backend {spec.scheme!r} needs the Python package providing {mod!r} ({exc}); "
                f"install it with: pip install 'anytask[{spec.extra}]'"
            ) from None
    module_name, _, class_name = spec.adapter.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Adapter] = getattr(module, class_name)
    return cls
