"""Running a recorded explorer run in napari's ``thread_worker`` without ever raising into Qt.

The worker drains :func:`lsdebm.explore.record_run` on a background thread, yields
:class:`~lsdebm.explore.Progress` at most every ``throttle`` seconds (so the GUI event loop is
never flooded by hundreds of Langevin events per second) and always *returns* an
:class:`Outcome`: errors become a one-line message for the panel instead of a traceback
dialog. Cancelling sets a ``threading.Event`` that the core loop checks before every event.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from napari.qt.threading import thread_worker

from lsdebm.errors import LsdebmError
from lsdebm.explore import Progress, RunCancelled, RunOutput

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How a run ended: ``done`` (with ``output``), ``cancelled`` or ``error`` (with ``message``)."""

    status: str
    output: RunOutput | None = None
    message: str = ""


def start_run(make_run: Callable[[threading.Event], Generator[Progress, None, RunOutput]],
              on_progress: Callable[[Progress], None], on_outcome: Callable[[Outcome], None],
              throttle: float = 0.1):
    """Start a worker over ``make_run(cancel)``; returns ``(worker, cancel_event)``."""
    cancel = threading.Event()

    @thread_worker(start_thread=False)
    def work():
        try:
            gen = make_run(cancel)
            last = 0.0
            while True:
                try:
                    p = next(gen)
                except StopIteration as stop:
                    return Outcome("done", stop.value)
                now = time.monotonic()
                if now - last >= throttle or p.done >= p.total:
                    last = now
                    yield p
        except RunCancelled:
            return Outcome("cancelled", message="Run cancelled.")
        except LsdebmError as exc:
            return Outcome("error", message=str(exc))
        except Exception as exc:  # a bug: keep the traceback in the log, show one line
            log.exception("explorer run failed")
            return Outcome("error", message=f"run failed: {type(exc).__name__}: {exc}")

    worker = work()
    worker.yielded.connect(on_progress)
    worker.returned.connect(on_outcome)
    worker.start()
    return worker, cancel
