"""Every error anytask raises. All derive from :class:`AnytaskError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import ErrorInfo


class AnytaskError(Exception):
    """Base class of all anytask errors."""


class ConfigurationError(AnytaskError):
    """The URL or the options given to anytask are wrong."""


class InvalidURL(ConfigurationError):
    """A backend URL could not be understood."""


class UnknownScheme(InvalidURL):
    """The URL's scheme names no known backend."""


class MissingDependency(ConfigurationError):
    """The queue library a backend needs is not installed."""


class UnsupportedFeature(AnytaskError):
    """A backend cannot do what was asked (raised at decoration or submit time)."""

    def __init__(self, backend: str, feature: str, reason: str = "", supported_by: Iterable[str] = ()) -> None:
        self.backend = backend
        self.feature = feature
        self.reason = reason
        self.supported_by = tuple(supported_by)
        msg = f"backend {backend!r} does not support {feature}"
        if reason:
            msg += f": {reason}"
        if self.supported_by:
            msg += f" (supported by: {', '.join(self.supported_by)})"
        super().__init__(msg)


class InvalidTask(AnytaskError):
    """A function cannot be a task (lambda, nested function, __main__ ...)."""


class NotSerializable(AnytaskError, TypeError):
    """An argument or a return value is not JSON."""


class PayloadTooLarge(AnytaskError, ValueError):
    """The JSON of a submission's arguments is over the client's ``max_payload`` (default 1 MiB)."""


class TaskNotRegistered(AnytaskError):
    """A task name is not known to the registry (e.g. the worker was not given its module)."""


class BrokerUnavailable(AnytaskError):
    """The broker or the result store did not answer in time."""


class BrokerAuthFailed(BrokerUnavailable):
    """The broker or the result store answered but refused the user name or password of the URL."""


_CREDENTIAL_SIGNS = ("ACCESS_REFUSED", "WRONGPASS", "invalid username-password", "NOAUTH", "AuthenticationError")


def refused_credentials(exc: BaseException) -> bool:
    """Whether a library's connection error says the credentials were refused (by its text: the
    libraries raise unrelated classes for it)."""
    text = f"{type(exc).__name__} {exc} {exc.__cause__!r} {exc.__context__!r}"
    return any(sign in text for sign in _CREDENTIAL_SIGNS)


def credentials_refused(what: str, service: str, masked_url: str, detail: str) -> BrokerAuthFailed:
    """The one message for refused credentials; ``masked_url`` and ``detail`` must already be masked."""
    return BrokerAuthFailed(f"{what}: {service} at {masked_url} refused the user name or password ({detail}); "
                            "check the credentials in the URL (RabbitMQ: rabbitmqctl list_users; "
                            "Redis: ACL LIST or requirepass)")


class UnknownTaskId(AnytaskError, LookupError):
    """No record exists for this task id (never submitted, or expired)."""


class ResultTimeout(AnytaskError, TimeoutError):
    """The task did not finish within the timeout given to ``result()``."""


class TaskCancelled(AnytaskError):
    """The task was cancelled; it has no result."""


class TaskFailed(AnytaskError):
    """The task raised. The remote exception is carried as strings, never unpickled."""

    def __init__(self, task_id: str, error: ErrorInfo) -> None:
        self.task_id = task_id
        self.error = error
        super().__init__(f"task {task_id} failed: {error.type}: {error.message}")

    @property
    def exc_type(self) -> str:
        return self.error.type

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def traceback(self) -> str:
        return self.error.traceback
