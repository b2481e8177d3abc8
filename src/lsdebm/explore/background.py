"""One background thread that runs decode jobs, newest request first (Qt-free).

Scrubbing produces a burst of requests; only the newest matters, so ``submit(..., urgent=True)``
drops every job still waiting and runs the new one next. Prefetch jobs are appended behind it
with ``replace="prefetch"``, which drops older prefetches but never a waiting request.
A job may also wait ``delay`` seconds before it starts (an urgent one still goes first), so
prefetching does not compete for the CPU with a viewer drawing the frame just asked for.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class JobQueue:
    """A lazily started daemon thread with a deque of zero-argument jobs."""

    def __init__(self, name: str = "lsdebm-decode") -> None:
        self.name = name
        self._jobs: deque[tuple[str | None, Callable[[], None], float]] = deque()  # (tag, job, not before)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False

    def submit(self, job: Callable[[], None], urgent: bool = False, replace: str | None = None,
               delay: float = 0.0) -> None:
        """Queue ``job``: ``urgent`` drops everything still waiting and puts it first; otherwise it
        is appended, after dropping waiting jobs submitted with the same ``replace`` tag, and starts
        no earlier than ``delay`` seconds from now."""
        with self._cond:
            if self._closed:
                return
            if urgent:
                self._jobs.clear()
                self._jobs.appendleft((None, job, 0.0))
            else:
                if replace is not None:
                    self._jobs = deque(j for j in self._jobs if j[0] != replace)
                self._jobs.append((replace, job, time.monotonic() + delay if delay > 0 else 0.0))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._jobs and not self._busy

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until idle (for tests and benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self, timeout: float = 0.0) -> bool:
        """Drop waiting jobs and stop the thread after the running one; wait up to ``timeout`` seconds for it.

        Returns True when the thread has ended (or never started)."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and timeout > 0 and thread is not threading.current_thread():
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    wait = self._jobs[0][2] - time.monotonic() if self._jobs else None
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)  # for a job, or until the first one may start
                if self._closed:
                    return
                _, job, _ = self._jobs.popleft()
                self._busy = True
            try:
                job()
            except Exception:  # a failed decode must not kill the thread; the caller sees no frame
                log.exception("background job failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
