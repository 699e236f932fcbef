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


# -- delivery guarantees (reliability, issue 7) ---------------------------------------------------------


class Delivery(str, enum.Enum):
    """What a worker crash (kill -9) does to the tasks it holds."""

    AT_MOST_ONCE = "at-most-once"  # a task held by a dead worker is lost (never run twice)
    AT_LEAST_ONCE = "at-least-once"  # it is delivered again (it may run twice)


def delivery_of(text: str) -> Delivery:
    """The guarantee a declaration's text starts with (``"at-least-once (acks late)"``)."""
    for d in Delivery:
        if text == d.value or text.startswith(d.value + " "):
            return d
    raise ValueError(f"a delivery declaration must start with one of {[d.value for d in Delivery]}: {text!r}")


# -- end of delivery guarantees ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """A backend's declaration.

    ``features`` maps every :class:`Feature` to how (or whether) the backend provides it; a
    feature left out is unsupported. ``needs_worker`` is False for in-process backends.
    ``delivery`` is the delivery guarantee of the default configuration, ``delivery_reliable``
    that of the worker config ``reliable`` ("" = the same); each starts with a :class:`Delivery`
    value, read by :meth:`guarantee`.
    """

    features: Mapping[Feature, FeatureSupport] = field(default_factory=dict)
    needs_worker: bool = True
    delivery: str = "at-least-once"
    brokers: tuple[str, ...] = ()
    delivery_reliable: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        delivery_of(self.delivery)
        if self.delivery_reliable:
            delivery_of(self.delivery_reliable)

    def delivery_text(self, config: str = "defaults") -> str:
        """The declaration for a worker config (``defaults``, ``tuned``, ``reliable``)."""
        return self.delivery_reliable if config == "reliable" and self.delivery_reliable else self.delivery

    def guarantee(self, config: str = "defaults") -> Delivery:
        return delivery_of(self.delivery_text(config))

    def get(self, feature: Feature) -> FeatureSupport:
        return self.features.get(feature, unsupported("not declared by this backend"))

    def supports(self, feature: Feature) -> bool:
        return self.get(feature).supported
