"""The one progress-and-cancel protocol of the core's long jobs.

A long job (record an explorer run, compare methods, repeated runs for uncertainty, generate
teaching digits, reconstruct a volume, evaluate a test set) is a **generator of** :class:`Progress`
**values that returns its result**::

    job: Job[Result] = record_run(...)        # Generator[Progress, None, Result]
    result = drain(job)                        # headless: run it to the end
    result = drain(job, on_progress=print, should_stop=button.is_pressed)

* Progress: ``done`` of ``total`` units, a short ``stage`` (what runs now) and an optional
  ``payload`` with job-specific detail (the explorer's newest latent, ...).
* Cancel: the caller stops iterating and closes the generator (``job.close()``); the job's
  ``finally`` blocks run and nothing half-finished is returned. :func:`drain` does this when
  ``should_stop()`` turns true and raises :class:`Cancelled`; a GUI worker does the same between
  two progress values (:mod:`napari_lsdebm._ui.jobs`). A job may also raise :class:`Cancelled`
  itself when handed a stop flag of its own.
* A plain function next to each job (``compare_methods``, ``reconstruct_volume``, ...) drains it.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from lsdebm.errors import LsdebmError

R = TypeVar("R")

#: A long job: yields progress, returns its result (``StopIteration.value``).
Job = Generator["Progress", None, R]


@dataclass(frozen=True)
class Progress:
    """How far a long job is: ``done`` of ``total`` units in ``stage``, with optional detail.

    Attributes:
        done: Units finished (events, runs, cases, ...), 0 <= done <= total.
        total: Units the job expects (1 when unknown).
        stage: What runs now, for a status line (``reverse``, ``LSD-EBM``, ``cases``, ...).
        payload: Job-specific detail, or None (see each job's docstring).
    """

    done: int
    total: int
    stage: str = ""
    payload: Any = None

    @property
    def fraction(self) -> float:
        """``done / total`` clipped to [0, 1]."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 0.0


class Cancelled(LsdebmError):
    """A long job was stopped by its caller before it finished."""


def drain(job: Job[R], on_progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> R:
    """Run ``job`` to its end and return its result.

    ``on_progress`` sees every progress value; ``should_stop`` is polled after each one and, when
    it returns True, the job is closed and :class:`Cancelled` raised.
    """
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)
        if should_stop is not None and should_stop():
            job.close()
            raise Cancelled("cancelled")
