"""What `Client` and `AsyncClient` share: settings, keys, retries, reading answers."""

from __future__ import annotations

import json
from typing import Any, Optional, TypeVar

import httpx

from . import _api
from ._errors import BarqError, InternalError, InvalidArgument, Timeout, TransportError
from ._version import __version__

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:6464"
# Above the server's default --request-timeout (60 s), so its `timeout` answer arrives first.
DEFAULT_TIMEOUT = 75.0

# Never sent: safe to retry whatever the request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# May have reached the server: retried only when the request is idempotent.
_MAYBE_SENT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError)


class _Base:
    def __init__(
        self,
        url: str,
        api_key: Optional[str],
        admin_key: Optional[str],
        timeout: Optional[float],
        retries: int,
        max_body_bytes: int,
    ) -> None:
        url = url.rstrip("/")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidArgument(f"invalid url {url!r}: expected http://HOST:PORT")
        if retries < 0:
            raise InvalidArgument(f"retries must be 0 or more, got {retries}")
        self.url = url
        self.retries = retries
        self.max_body_bytes = max_body_bytes
        self._timeout = timeout
        api_key = api_key or None
        admin = admin_key or api_key
        self._headers: dict[str, dict[str, str]] = {
            _api.PUBLIC: {},
            _api.DATA: {"Authorization": f"Bearer {api_key}"} if api_key else {},
            _api.ADMIN: {"Authorization": f"Bearer {admin}"} if admin else {},
        }

    def _client_options(self) -> dict[str, Any]:
        t = self._timeout
        return {
            "base_url": self.url,
            "timeout": httpx.Timeout(t, connect=None if t is None else min(t, 10.0)),
            "limits": httpx.Limits(max_keepalive_connections=16, keepalive_expiry=30.0),
            "headers": {
                "User-Agent": f"barq-client-python/{__version__}",
                "Content-Type": "application/json",
            },
        }

    def _retryable(self, exc: httpx.TransportError, req: _api.Request[Any], attempt: int) -> bool:
        if attempt >= self.retries:
            return False
        if isinstance(exc, _NOT_SENT):
            return True
        return req.idempotent and isinstance(exc, _MAYBE_SENT)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(min(0.05 * 2**attempt, 1.0))

    def _transport_error(self, exc: httpx.TransportError, req: _api.Request[Any]) -> BarqError:
        what = f"{req.method} {req.path}"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, _NOT_SENT):
            return Timeout(
                f"no answer from the Barq server at {self.url} to {what} within "
                f"{self._timeout} s (the client's timeout)"
            )
        cause = str(exc) or type(exc).__name__
        return TransportError(f"cannot reach the Barq server at {self.url} ({what}): {cause}")

    def _answer(self, req: _api.Request[T], status: int, content: bytes) -> T:
        if status >= 400:
            raise _api.error_of_answer(status, content)
        if req.text:
            return req.parse(content.decode("utf-8", "replace"))
        try:
            data = json.loads(content) if content else {}
            return req.parse(data)
        except (ValueError, KeyError, TypeError) as e:
            raise InternalError(
                f"unexpected answer from the Barq server at {self.url} to "
                f"{req.method} {req.path}: {e!r}",
                status=status,
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"
