"""One root exception and a subtree per layer.

Permanent and transient failures are different types, decided where the error is raised:
``InvalidInput`` fails a task at once, ``TransientError`` (and any unexpected exception) is retried.
"""

from __future__ import annotations


class GeomillError(Exception):
    """Root of every error geomill raises on purpose."""


class InvalidInput(GeomillError):
    """Bad parameters, missing or corrupt file, unsupported CRS: a person must act; never retried."""

    def __init__(self, message: str, *, field: str | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.errors = errors or ([{"field": field, "message": message}] if field else [])


class UnknownJobType(InvalidInput):
    """A job type name that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown job type {name!r}; known job types: {', '.join(sorted(known))}", field="job_type")
        self.name = name
        self.known = sorted(known)


class NotFound(GeomillError):
    """A job or task id that does not exist."""


class TaskError(GeomillError):
    """Raised by task handlers for failures that are not the input's fault."""


class TransientError(TaskError):
    """A failure worth retrying (network blip, busy resource)."""


class PermanentError(TaskError):
    """A failure no retry can fix and that is not the input's fault (a solver breaking its contract, a peer that
    refuses the request for good): fails the task at once."""


class OutOfSpace(TaskError):
    """The target filesystem has no room for an output. Never retried at once (it would fill the disk again): the
    task fails, or waits GEOMILL_OUT_OF_SPACE_RETRY_SECONDS when that is set (room may be freed meanwhile)."""

    def __init__(self, message: str, *, path: str, free_bytes: int | None = None,
                 needed_bytes: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes


class TaskTimeout(TransientError):
    """A task ran past its time limit."""


class Conflict(GeomillError):
    """An operation the resource's current state does not allow (cancel a finished job, retry a running task)."""


class NotFinished(Conflict):
    """A job's result asked for while the job still runs."""


class IllegalTransition(GeomillError):
    """A status change the transition table forbids: a bug, logged and refused, never retried."""


class Fenced(GeomillError):
    """A worker lost its lease: another attempt owns the task now; its work must be dropped."""


class StoreError(GeomillError):
    """A failure in a Store implementation (driver errors are translated to this at the edge)."""


class DispatchError(GeomillError):
    """A failure in a dispatcher (e.g. the broker is unreachable); the database still holds all state."""


class RegistryError(GeomillError):
    """A job or task type declaration is inconsistent; raised at registration, not at run time."""
