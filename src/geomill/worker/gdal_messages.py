"""GDAL and libtiff messages tied to the task that caused them (issue 25).

Two paths reach a worker process. GDAL's errors go through its error handler, which rasterio logs to the
``rasterio._err`` and ``rasterio._env`` loggers at INFO (below a service's log level, so they were lost). libtiff's
own error handler prints straight to file descriptor 2 (``_tiffWriteProc: No space left on device.``), where a
service saw a raw line tied to no task. :class:`TaskMessages` collects the first while a task runs;
:class:`NativeStderr` (installed by each worker process) turns file descriptor 2 into a pipe read by a thread that
logs each raw line as a geomill record carrying the running task's id and keeps it for the task's error record.
Python's own ``sys.stderr`` and the log handlers are moved to a copy of the original descriptor first, so only
native writes pass through the pipe.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

GDAL_LOGGERS = ("rasterio._err", "rasterio._env")
MAX_MESSAGES = 20  # kept per task (the first ones: the cause comes before the follow-up errors)
PREFIX = "GDAL signalled an error: err_no="
MARK = b"\x00geomill-stderr-mark\n"

log = logging.getLogger("geomill.gdal")


def _clean(message: str) -> str:
    """rasterio's "GDAL signalled an error: err_no=1, msg='...'" as GDAL's own message."""
    if message.startswith(PREFIX) and ", msg=" in message:
        return message.split(", msg=", 1)[1].strip("'\"")
    return message


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        _keep(self.into, _clean(record.getMessage()))


def _keep(into: list[str], message: str) -> None:
    if message and message not in into and len(into) < MAX_MESSAGES:
        into.append(message)


class NativeStderr:
    """File descriptor 2 as a pipe whose lines are logged (with the current task's ids) and kept for the task."""

    def __init__(self) -> None:
        self._saved_fd = -1
        self._stream: IO[str] | None = None
        self._old_stderr: Any = None
        self._moved: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._read_fd = -1
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._current: tuple[dict[str, Any], list[str]] | None = None
        self._marked = threading.Event()

    def install(self) -> NativeStderr:
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self._stream = os.fdopen(os.dup(self._saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and _writes_to_fd2(handler.stream):
                self._moved.append((handler, handler.setStream(self._stream)))
        self._old_stderr, sys.stderr = sys.stderr, self._stream
        self._read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._read, name="geomill-native-stderr", daemon=True)
        self._thread.start()
        return self

    def uninstall(self) -> None:
        os.dup2(self._saved_fd, 2)  # the pipe's last writer is gone: the reader sees end of file
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for handler, stream in self._moved:
            handler.setStream(stream)
        sys.stderr = self._old_stderr
        for fd in (self._saved_fd, self._read_fd):
            os.close(fd)
        if self._stream is not None:
            self._stream.close()

    @contextmanager
    def task(self, extra: dict[str, Any], into: list[str]) -> Iterator[None]:
        """Lines written while the block runs carry `extra` (task_id, job_id) and are kept in `into`."""
        with self._lock:
            self._current = (extra, into)
        try:
            yield
        finally:
            self._flush()
            with self._lock:
                self._current = None

    def _flush(self) -> None:
        """Wait until the reader has seen everything written so far (a mark written after it comes back)."""
        self._marked.clear()
        try:
            os.write(2, MARK)
        except OSError:
            return
        self._marked.wait(timeout=1.0)

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                if pending:
                    self._line(pending)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line + b"\n" == MARK:
                    self._marked.set()
                else:
                    self._line(line)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip()
        if not text:
            return
        with self._lock:
            current = self._current
        if current is None:
            log.warning("%s", text)
            return
        extra, into = current
        _keep(into, text)
        log.warning("%s", text, extra=extra)


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 2)
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def task_messages(extra: dict[str, Any], native: NativeStderr | None = None) -> Iterator[list[str]]:
    """GDAL's messages (and, with `native`, the raw stderr lines) while one task runs, in order of arrival; rasterio's
    INFO records of them stay out of the log, as before (a handled GDAL error is no news)."""
    messages: list[str] = []
    handler = _Collect(messages)
    saved = []
    for name in GDAL_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)  # rasterio logs GDAL's errors at INFO: below a service's level, yet wanted
        logger.propagate = False
    try:
        if native is None:
            yield messages
        else:
            with native.task(extra, messages):
                yield messages
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
