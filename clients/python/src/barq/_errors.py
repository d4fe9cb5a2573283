"""The exception hierarchy: one class per error code of the API, all under `BarqError`."""

from __future__ import annotations

from typing import Optional


class BarqError(Exception):
    """An error answered by the server, or a request that got no answer.

    `status` is the HTTP status (`None` when there was no answer), `code` the API's error code
    (`"not_found"`, ...) and `message` the server's message.
    """

    # The code of an error raised by the client itself, before sending.
    default_code: Optional[str] = None

    def __init__(
        self, message: str, *, status: Optional[int] = None, code: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code if code is not None else self.default_code

    def __str__(self) -> str:
        if self.status is None and self.code is None:
            return self.message
        where = " ".join(str(p) for p in (self.status, self.code) if p is not None)
        return f"{self.message} ({where})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"
        )


class InvalidArgument(BarqError):
    """400 `invalid_argument`: bad input (also raised before sending, for input checked here)."""

    default_code = "invalid_argument"


class Unauthorized(BarqError):
    """401 `unauthorized`: no API key, or a wrong one."""


class Forbidden(BarqError):
    """403 `forbidden`: the data API key on an admin route."""


class ReadOnly(Forbidden):
    """403 `read_only`: a write or tiering operation sent to a read-only replica."""


class NotFound(BarqError):
    """404 `not_found`: no such collection, document, segment, operation or route."""


class MethodNotAllowed(BarqError):
    """405 `method_not_allowed`."""


class Conflict(BarqError):
    """409 `conflict`: the collection exists, or a segment is busy (retry)."""


class PayloadTooLarge(BarqError):
    """413 `payload_too_large`: the request body is over the server's `--max-body-bytes`."""


class Unavailable(BarqError):
    """503 `unavailable`: the cold store cannot be reached, or writers are stalled; retry later."""


class Closed(Unavailable):
    """503 `closed`: the database is shutting down."""


class Timeout(Unavailable):
    """503 `timeout` (the server's `--request-timeout`), or the client's own timeout."""


class TransportError(Unavailable):
    """The request got no answer: connection refused or reset, or a broken response."""


class DataCorruption(BarqError):
    """500 `data_corruption`: a checksum mismatch, or a cold object that is gone."""


class InternalError(BarqError):
    """500 `internal`: a server bug or an unexpected I/O failure."""


_BY_CODE: dict[str, type[BarqError]] = {
    "invalid_argument": InvalidArgument,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "read_only": ReadOnly,
    "not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "conflict": Conflict,
    "payload_too_large": PayloadTooLarge,
    "unavailable": Unavailable,
    "closed": Closed,
    "timeout": Timeout,
    "data_corruption": DataCorruption,
    "internal": InternalError,
}

_BY_STATUS: dict[int, type[BarqError]] = {
    400: InvalidArgument,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    500: InternalError,
    503: Unavailable,
}


_STATUS_OF_CODE: dict[str, int] = {
    "invalid_argument": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "read_only": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "unavailable": 503,
    "closed": 503,
    "timeout": 503,
    "data_corruption": 500,
    "internal": 500,
}


def error_from(status: Optional[int], code: Optional[str], message: str) -> BarqError:
    """The exception of an error answer: by its code, else by its status.

    A failed asynchronous operation has a code but no status of its own: it gets the status the
    synchronous request would have had.
    """
    if status is None and code is not None:
        status = _STATUS_OF_CODE.get(code)
    cls = _BY_CODE.get(code or "")
    if cls is None and status is not None:
        cls = _BY_STATUS.get(status)
    return (cls or BarqError)(message, status=status, code=code)
