"""The one way a dock runs long work off the GUI thread, without ever raising into Qt.

A dock starts a job and keeps it while it runs::

    self.worker = start_job(work, on_done=self._on_done, on_progress=self._on_progress)
    ...
    self.worker.cancel()          # from a Cancel button

``work(job)`` runs on a napari worker thread (:func:`napari.qt.threading.create_worker`, so
Python warnings still become napari notifications). It may

* return a value: the job's output;
* return a generator: it is drained on the worker thread; every yielded item is progress and
  its return value is the output; once cancelled, the job stops before the next item;
* call ``job.report(item)``: progress from inside a core callback (safe from any thread);
* poll ``job.cancelled()`` or hand ``job.cancel_event`` to the core, and raise
  :class:`lsdebm.explore.RunCancelled` to end as cancelled (work that stops early but returns
  a partial result simply ends as ``done``).

Progress reaches ``on_progress`` on the GUI thread, at most every ``throttle`` seconds (items
that ``keep`` accepts always pass, so a final 100 % is never dropped). Every job ends with one
``on_done(Outcome)`` call on the GUI thread, after its last progress item: ``done`` with
``output``, ``cancelled``, or ``error`` with a one-line ``message`` for the dock's status line.
A callback that finds its dock's widgets deleted (the viewer closed while the job ran) ends quietly.
A user error (:class:`lsdebm.errors.LsdebmError`) gives its own message; anything else is a
bug: its traceback goes to the log and the message is ``"Type: text"``.

At interpreter exit, jobs still running are cancelled and waited for (at most :data:`EXIT_WAIT_S`
in all) before PyQt's exit clean-up deletes their worker's signals: a worker that ended after that
printed ``RuntimeError: wrapped C/C++ object of type WorkerBaseSignals has been deleted`` (a script
that leaves Python with a run going and the viewer open).
"""
from __future__ import annotations

import atexit
import inspect
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QThreadPool, Signal, Slot

from lsdebm.errors import LsdebmError
from lsdebm.explore import RunCancelled

log = logging.getLogger(__name__)

EXIT_WAIT_S = 1.0  # at interpreter exit, the most all running jobs together are waited for
_started: weakref.WeakSet = weakref.WeakSet()  # jobs started; a running one is kept alive by its worker


@dataclass
class Outcome:
    """How a job ended: ``done`` (with ``output``), ``cancelled`` or ``error`` (with ``message``)."""

    status: str
    output: Any = None
    message: str = ""


def error_text(exc: BaseException) -> str:
    """One line for the user: the message of an LsdebmError, else the type and message (logged)."""
    if isinstance(exc, LsdebmError):
        return str(exc)
    log.error("napari-lsdebm error:\n%s", "".join(traceback.format_exception(exc)))
    return f"{type(exc).__name__}: {exc}"


class Job(QObject):
    """A running job: cancel it, report progress from the worker; callbacks arrive on the GUI thread.

    Create it on the GUI thread (:func:`start_job` does): its signals are then queued to that
    thread, in the order the worker emits them.
    """

    progressed = Signal(object)
    ended = Signal(object)

    def __init__(self, on_done: Callable[[Outcome], None], on_progress: Callable[[Any], None] | None = None,
                 throttle: float = 0.0, keep: Callable[[Any], bool] | None = None) -> None:
        super().__init__()
        self.cancel_event = threading.Event()
        self.worker = None  # the napari worker that runs the job
        self.throttle, self.keep = throttle, keep
        self._on_done, self._on_progress = on_done, on_progress
        self._last = float("-inf")
        self.progressed.connect(self._deliver_progress)
        self.ended.connect(self._deliver_outcome)

    def cancel(self) -> None:
        """Ask the work to stop (it checks between items, or through ``cancel_event``)."""
        self.cancel_event.set()

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self.cancel_event.is_set()

    def running(self) -> bool:
        """True while the worker thread runs the work."""
        return bool(getattr(self.worker, "is_running", False))

    def stop(self, wait_s: float) -> bool:
        """Cancel, then wait up to ``wait_s`` seconds for the worker to end; True if it did."""
        self.cancel()
        end = time.monotonic() + wait_s
        while self.running() and time.monotonic() < end:
            time.sleep(0.01)
        return not self.running()

    def report(self, item) -> None:
        """Send ``item`` to ``on_progress`` on the GUI thread unless throttled; call from any thread."""
        now = time.monotonic()
        if now - self._last >= self.throttle or (self.keep is not None and self.keep(item)):
            self._last = now
            _send(self, "progressed", item)

    @Slot(object)
    def _deliver_progress(self, item) -> None:
        # an item still queued when Cancel was clicked would overwrite the dock's "cancelling" with "running ..."
        if self._on_progress is not None and not self.cancelled():
            _to_the_dock(self._on_progress, item)

    @Slot(object)
    def _deliver_outcome(self, outcome: Outcome) -> None:
        _to_the_dock(self._on_done, outcome)


def _send(job: Job, signal: str, value) -> None:
    """Emit ``job``'s signal from the worker thread; nothing if the Job was deleted (the process is exiting)."""
    try:
        getattr(job, signal).emit(value)
    except RuntimeError as exc:  # PyQt: "wrapped C/C++ object of type Job has been deleted"
        if "deleted" not in str(exc):
            raise
        job.cancel_event.set()  # nobody listens any more: stop the work at its next item
        log.info("napari-lsdebm: a job's %s went unheard: %s", signal, exc)


def _to_the_dock(callback: Callable[[Any], None], value) -> None:
    """Call a dock's callback; if its widgets are gone (the viewer was closed while the job ran), end quietly."""
    try:
        callback(value)
    except RuntimeError as exc:  # PyQt: "wrapped C/C++ object ... has been deleted"; PySide: "... already deleted"
        if "C++ object" not in str(exc) or "deleted" not in str(exc):
            raise
        log.info("napari-lsdebm: a job ended after its dock was closed (%s)", exc)


def run_job(job: Job, work: Callable[[Job], Any], what: str = "job", failed: str = "") -> Outcome:
    """Run ``work(job)`` here (the worker thread), drain a generator, and end the job with its Outcome.

    ``what`` names the work in the cancel message and the log; ``failed`` prefixes a bug's message.
    """
    try:
        output = work(job)
        if inspect.isgenerator(output):
            output = drain_progress(job, output, what)
        outcome = Outcome("done", output)
    except RunCancelled:
        outcome = Outcome("cancelled", message=f"{what.capitalize()} cancelled.")
    except Exception as exc:  # a user error shows its message; a bug logs its traceback too
        text = error_text(exc)
        bug = not isinstance(exc, LsdebmError)
        outcome = Outcome("error", message=f"{failed}: {text}" if failed and bug else text)
    _send(job, "ended", outcome)
    return outcome


def drain_progress(job: Job, gen, what: str = "job"):
    """Report every item of ``gen`` as progress and return its value; stop once the job is cancelled."""
    while True:
        if job.cancelled():
            gen.close()
            raise RunCancelled(f"{what} cancelled")
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        job.report(item)


def start_job(work: Callable[[Job], Any], on_done: Callable[[Outcome], None],
              on_progress: Callable[[Any], None] | None = None, *, throttle: float = 0.0,
              keep: Callable[[Any], bool] | None = None, what: str = "job", failed: str = "") -> Job:
    """Start ``work(job)`` on a worker thread; returns the :class:`Job` (keep it while it runs).

    Args:
        work: The function run on the worker thread (see the module docstring).
        on_done: Called once on the GUI thread with the :class:`Outcome`.
        on_progress: Called on the GUI thread with each progress item.
        throttle: Least seconds between two progress items (0: every item).
        keep: Progress items for which this is true pass the throttle.
        what: Name of the work, for the cancel message (``"Run cancelled."``) and the log.
        failed: Prefix of a bug's message (``"run failed"`` gives ``"run failed: Type: text"``).
    """
    job = Job(on_done, on_progress, throttle, keep)
    job.worker = create_worker(run_job, job, work, what, failed, _start_thread=False)
    job.worker.start()
    _started.add(job)
    return job


def stop_running_jobs(wait_s: float = EXIT_WAIT_S) -> int:
    """Cancel every running job and wait up to ``wait_s`` seconds for the thread pool; returns how many ran.

    The pool, not :meth:`Job.running`: a worker emits ``finished`` after it stops counting as running.
    """
    running = [job for job in list(_started) if job.running()]
    for job in running:
        job.cancel()
    if running:
        QThreadPool.globalInstance().waitForDone(int(wait_s * 1000))
    return len(running)


atexit.register(stop_running_jobs)  # registered after PyQt's exit clean-up (QtCore is imported above): runs first
