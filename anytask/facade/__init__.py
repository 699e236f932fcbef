"""anytask's core: public types and the client. Imports no queue or broker library."""

from .adapter import Adapter, WorkerOptions
from .capabilities import Capabilities, Feature, FeatureSupport, Support, emulated, native, unsupported
from .client import Client, TaskHandle, connect
from .errors import (
    AnytaskError,
    BrokerAuthFailed,
    BrokerUnavailable,
    ConfigurationError,
    InvalidTask,
    InvalidURL,
    MissingDependency,
    NotSerializable,
    PayloadTooLarge,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskNotRegistered,
    UnknownScheme,
    UnknownTaskId,
    UnsupportedFeature,
)
from .execution import TaskContext, current_task, progress
from .records import CancelOutcome, CancelResult, ErrorInfo, Message, TaskResult
from .status import Status
from .task import Task, TaskOptions, get_task, parse_rate, registered_tasks, task
from .url import BackendURL, mask, parse_url

__all__ = [
    "Adapter", "AnytaskError", "CancelOutcome", "CancelResult", "parse_rate", "BackendURL", "BrokerAuthFailed", "BrokerUnavailable", "Capabilities", "Client",
    "ConfigurationError", "ErrorInfo", "Feature", "FeatureSupport", "InvalidTask", "InvalidURL",
    "Message", "MissingDependency", "NotSerializable", "PayloadTooLarge", "ResultTimeout", "Status", "Support", "Task",
    "TaskCancelled", "TaskContext", "TaskFailed", "TaskHandle", "TaskNotRegistered", "TaskOptions",
    "TaskResult", "UnknownScheme", "UnknownTaskId", "UnsupportedFeature", "WorkerOptions", "connect",
    "current_task", "emulated", "get_task", "mask", "native", "parse_url", "progress",
    "registered_tasks", "task", "unsupported",
]

# -- periodic tasks (docs/periodic.md) --
from .schedule import Schedule, periodic, registered_schedules  # noqa: E402

__all__ += ["Schedule", "periodic", "registered_schedules"]

# -- canvas: chain, group, chord (docs/canvas.md) --
from .canvas import Chain, Chord, Group, Signature, chain, chord, group  # noqa: E402
from .canvas_handles import ChainHandle, ChordHandle, GroupHandle  # noqa: E402
from .continuation import ContinuationError  # noqa: E402

__all__ += ["Chain", "ChainHandle", "Chord", "ChordHandle", "ContinuationError", "Group", "GroupHandle", "Signature",
            "chain", "chord", "group"]
