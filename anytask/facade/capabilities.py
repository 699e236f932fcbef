"""What each backend can do, declared once as frozen data.

Like django.tasks' ``supports_*`` flags: the client checks a task's options and a submit's
options against the declaration and raises :class:`UnsupportedFeature` before anything is
enqueued. The conformance suite skips a case only through these declarations.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Feature(str, enum.Enum):
    RETRIES = "retries"  # retry a failed task N more times, with backoff
    TIMEOUT = "timeout"  # per-task time limit
    QUEUES = "queues"  # named queues, workers choose which to consume
    ASYNC_TASKS = "async_tasks"  # ``async def`` task functions
    DELAY = "delay"  # run after a delay / at an ETA (SCHEDULED)
    PRIORITY = "priority"
    CANCEL = "cancel"
    PROGRESS = "progress"
    CHAIN = "chain"
    GROUP = "group"
    CHORD = "chord"
    RATE_LIMIT = "rate_limit"
    UNIQUE = "unique"
    RESULT_TTL = "result_ttl"
    PERIODIC = "periodic"


class Support(str, enum.Enum):
    NATIVE = "native"  # the library's own mechanism
    EMULATED = "emulated"  # built by the facade from the library's primitives
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class FeatureSupport:
    support: Support
    how: str = ""  # the mechanism used, or why it is unsupported

    @property
    def supported(self) -> bool:
        return self.support is not Support.UNSUPPORTED


def native(how: str) -> FeatureSupport:
    return FeatureSupport(Support.NATIVE, how)


def emulated(how: str) -> FeatureSupport:
    return FeatureSupport(Support.EMULATED, how)


def unsupported(why: str) -> FeatureSupport:
    return FeatureSupport(Support.UNSUPPORTED, why)


@dataclass(frozen=True)
class Capabilities:
    """A backend's declaration.

    ``features`` maps every :class:`Feature` to how (or whether) the backend provides it; a
    feature left out is unsupported. ``needs_worker`` is False for in-process backends.
    ``delivery`` is the delivery guarantee of the default configuration.
    """

    features: Mapping[Feature, FeatureSupport] = field(default_factory=dict)
    needs_worker: bool = True
    delivery: str = "at-least-once"
    brokers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))

    def get(self, feature: Feature) -> FeatureSupport:
        return self.features.get(feature, unsupported("not declared by this backend"))

    def supports(self, feature: Feature) -> bool:
        return self.get(feature).supported
