"""Where access log lines go: a writer thread, so the event loop never waits on a disk or pipe.

The core formats lines into its own buffer and hands over 256 KiB (by default) at a time, or
whatever it holds once per `flush_interval`. The thread writes them to stdout, stderr or a file
opened for appending; `reopen()` (SIGUSR1) closes and reopens the file after logrotate moved
it. Writes to a pipe are cut at line boundaries into pieces of at most PIPE_BUF bytes, so that
workers sharing one pipe never interleave inside a line. If the destination stops taking data,
at most `max_pending` bytes wait; lines beyond that are dropped and counted, and the gateway
keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import threading
from collections import deque
from typing import Any

from fastgw import _core

__all__ = ["AccessLogWriter", "build_access_log"]

logger = logging.getLogger("fastgw")

MAX_PENDING = 64 * 1024 * 1024
_REOPEN = object()  # in the queue: reopen the file here, between the lines before and after


class AccessLogWriter:
    """A destination ("stdout", "stderr" or a path) and the thread that writes to it."""

    def __init__(self, path: str, *, max_pending: int = MAX_PENDING) -> None:
        self.path = path
        self.max_pending = max_pending
        self.dropped_lines = 0
        self.written_bytes = 0
        self._queue: deque[Any] = deque()  # lines (bytes), and _REOPEN markers in order
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._fd = -1
        self._owns_fd = False
        self._pipe = False
        self._open()
        self._thread = threading.Thread(target=self._run, name="fastgw-access-log", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        if self.path == "stdout":
            self._fd, self._owns_fd = 1, False
        elif self.path == "stderr":
            self._fd, self._owns_fd = 2, False
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._owns_fd = True
        try:
            self._pipe = stat.S_ISFIFO(os.fstat(self._fd).st_mode)
        except OSError:
            self._pipe = False

    def submit(self, data: bytes) -> None:
        """Queue whole lines (called by the core on the event loop; never blocks)."""
        with self._lock:
            if self._pending + len(data) > self.max_pending:
                self.dropped_lines += data.count(b"\n")
                return
            self._queue.append(data)
            self._pending += len(data)
            self._wake.notify()

    def reopen(self) -> None:
        """Reopen the file on the writer thread (after logrotate moved it away)."""
        with self._lock:
            self._queue.append(_REOPEN)
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread and close the file."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                batch = list(self._queue)
                self._queue.clear()
                closing = self._closing
            for data in batch:
                if data is _REOPEN:
                    self._reopen_file()
                    continue
                self._write(data)  # type: ignore[arg-type]
                with self._lock:
                    self._pending -= len(data)
            if closing:
                with self._lock:
                    if self._queue:
                        continue
                self._close_fd()
                return

    def _reopen_file(self) -> None:
        if not self._owns_fd:
            return  # stdout and stderr stay what they are
        self._close_fd()
        try:
            self._open()
        except OSError as exc:
            logger.error("cannot reopen access log %s: %s", self.path, exc)

    def _close_fd(self) -> None:
        if self._owns_fd and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            self.dropped_lines += data.count(b"\n")
            return
        view = memoryview(data)
        while view:
            piece = view
            if self._pipe and len(view) > select.PIPE_BUF:
                cut = bytes(view[: select.PIPE_BUF]).rfind(b"\n") + 1
                piece = view[: cut or select.PIPE_BUF]
            try:
                written = os.write(self._fd, piece)
            except InterruptedError:
                continue
            except BlockingIOError:
                select.select([], [self._fd], [], 1.0)
                continue
            except OSError as exc:
                self.dropped_lines += bytes(view).count(b"\n")
                logger.error("access log write to %s failed: %s", self.path, exc)
                return
            self.written_bytes += written
            view = view[written:]


def build_access_log(settings: Any, writer: AccessLogWriter) -> Any:
    """The core's AccessLog for `settings` (config.AccessLogSettings), writing to `writer`."""
    return _core.AccessLog(
        writer.submit,
        fields=list(settings.fields),
        sample=settings.sample,
        keep_errors=settings.keep_errors,
        flush_bytes=settings.buffer,
        flush_interval=settings.flush_interval,
    )
