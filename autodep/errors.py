"""One error base carrying an HTTP status; the HTTP layer turns it into JSON.

Errors raised inside a worker cross the process boundary as text
("Class: message" plus traceback), never as pickled exception objects.
"""

from __future__ import annotations

import logging
import uuid

log = logging.getLogger(__name__)


class AutodepError(Exception):
    """Base of every error autodep reports to a client."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(AutodepError):
    """The request body or a query value cannot be used."""

    status = 400


class ModelNotFound(AutodepError):
    status = 404


class PayloadTooLarge(AutodepError):
    status = 413


class UnsupportedMediaType(AutodepError):
    status = 415


class Unavailable(AutodepError):
    """The model cannot take the request now; the client should retry later."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class QueueFull(Unavailable):
    pass


class ShuttingDown(Unavailable):
    pass


class RequestTimeout(AutodepError):
    status = 504


class BodyTimeout(AutodepError):
    """A request body stalled (--body-timeout between two chunks)."""

    status = 408


class WorkerError(AutodepError):
    """The model failed inside a worker: a crash, or an exception it raised."""

    status = 500

    def __init__(self, message: str, *, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class WorkerStartError(WorkerError):
    """A worker process could not load its model or died while starting."""


class ConfigError(AutodepError):
    """The server or model configuration is invalid (raised before any worker starts)."""


class OptimizeError(WorkerStartError):
    """The optimizer could not run its search, or the variant asked for is not usable."""


_BY_STATUS: dict[int, type[AutodepError]] = {
    400: InvalidInput,
    404: ModelNotFound,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    504: RequestTimeout,
}


def error_for_status(status: int, message: str) -> AutodepError:
    """An error reported by a worker as (status, message), as the class for that status."""
    return _BY_STATUS.get(status, WorkerError)(message)


def internal_error(exc: BaseException, what: str) -> str:
    """Log a failure that is not the client's under a fresh request id; what the client gets.

    The details (a worker's exception, which may quote the model's source and its
    author's file paths, and its traceback) go to the log only.
    """
    request_id = uuid.uuid4().hex[:12]
    if isinstance(exc, AutodepError):
        remote = exc.remote_traceback if isinstance(exc, WorkerError) else ""
        log.error(
            "%s failed (request id %s): %s%s",
            what,
            request_id,
            exc.message,
            f"\n{remote}" if remote else "",
        )
    else:
        log.error("%s failed (request id %s)", what, request_id, exc_info=exc)
    return f"internal error (request id {request_id}); see the server log"
