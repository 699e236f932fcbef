"""Backend URLs: ``<library>+<transport>://...`` (or ``memory://``), with passwords masked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping
from urllib.parse import parse_qsl, urlsplit

from .errors import InvalidURL

_PASSWORD_RE = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<post>@)")


# ``user:password@host`` with the scheme forgotten (a malformed URL must not leak its password either)
_BARE_PASSWORD_RE = re.compile(r"(?P<pre>(?:^|(?<=[\s'\"(]))[^:/@\s'\"(]*:)(?P<pw>[^@\s/]*)(?P<post>@)")


def mask(text: str) -> str:
    """Replace every password in URLs inside ``text`` by ``***``."""
    text = _PASSWORD_RE.sub(lambda m: f"{m['pre']}***{m['post']}", text)
    return _BARE_PASSWORD_RE.sub(lambda m: f"{m['pre']}***{m['post']}", text)


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL.

    ``scheme`` is the full scheme (``rq+redis``), ``library`` its first part (``rq``),
    ``transport`` the broker (``redis``, ``amqp``, ``sqlite``, or ``""`` for memory),
    ``broker_url`` the URL the library itself is given (``redis://127.0.0.1:6379/0``) with the
    anytask query parameters removed, and ``params`` those parameters.
    """

    raw: str
    scheme: str
    library: str
    transport: str
    broker_url: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def masked(self) -> str:
        return mask(self.raw)

    @property
    def host(self) -> str:
        return urlsplit(self.broker_url).hostname or ""

    @property
    def port(self) -> int | None:
        try:
            return urlsplit(self.broker_url).port
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"BackendURL({self.masked!r})"

    __str__ = __repr__


def parse_url(url: str) -> BackendURL:
    """Split a backend URL into library, transport, broker URL and parameters."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL(
            "empty backend URL: pass one such as 'rq+redis://127.0.0.1:6379/0', "
            "'huey+sqlite:///tasks.db' or 'memory://', or set ANYTASK_URL"
        )
    url = url.strip()
    if "://" not in url:
        raise InvalidURL(f"malformed backend URL {mask(url)!r}: expected '<library>+<broker>://...', "
                         "e.g. 'rq+redis://127.0.0.1:6379/0'")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    try:
        parts = urlsplit("x://" + rest)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise InvalidURL(f"malformed backend URL {mask(url)!r}: {exc}") from None
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "+" in scheme:
        library, transport = scheme.split("+", 1)
    else:
        library, transport = scheme, ""
    broker_scheme = transport or library
    broker = f"{broker_scheme}://{rest.split('?', 1)[0].split('#', 1)[0]}"
    return BackendURL(raw=url, scheme=scheme, library=library, transport=transport,
                      broker_url=broker, params=params)
