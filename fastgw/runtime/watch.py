"""--watch: notice a settled edit of the config file, by polling its identity."""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["WATCH_INTERVAL", "FileWatcher", "watch_in_thread"]

WATCH_INTERVAL = 0.25


class FileWatcher:
    """Polls a file's identity (inode, size, mtime); `changed()` is true once per settled edit.

    An edit is reported when the new identity was seen unchanged on two polls, so a file
    caught half-written is not read until the writer is done.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._current = self._stat()
        self._candidate: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        seen = self._stat()
        if seen is None or seen == self._current:
            self._candidate = None
            return False
        if seen != self._candidate:
            self._candidate = seen
            return False
        self._current = seen
        self._candidate = None
        return True


def watch_in_thread(config_file: str) -> None:
    """--watch with one process: a changed file is reloaded as if SIGHUP had been sent."""
    watcher = FileWatcher(config_file)

    def poll() -> None:
        while True:
            threading.Event().wait(WATCH_INTERVAL)
            if watcher.changed():
                os.kill(os.getpid(), signal.SIGHUP)

    threading.Thread(target=poll, name="fastgw-watch", daemon=True).start()
