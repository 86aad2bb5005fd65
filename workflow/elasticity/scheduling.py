"""One pending re-evaluation timer in Snakemake's job scheduler, not one per scheduling round.

Snakemake 9.27's scheduler (`JobScheduler.schedule`) ends every round that had ready jobs by
starting a `threading.Timer` that wakes the scheduler once more after the job-rate timespan
(`--max-jobs-per-timespan`, 1 s by default). The round that timer wakes starts a timer of its
own, so every job event that wakes the scheduler starts a chain of rounds that lasts as long as
jobs are waiting for a core. After n job events n chains run, each a full round per second (the
input-file sizes of every ready job are read again); on a grid of 2,000 short jobs and 2 cores
the controller spends most of a core on them (measured: README, "Performance"; upstream
snakemake/snakemake#3744). The timer exists so that jobs held back by the rate limit are
scheduled once the timespan has passed, and one pending timer does exactly that.

This is launcher code: no step imports it, so it is in no step's code fingerprint.
"""

from __future__ import annotations

import threading
from typing import Any

_PENDING_LOCK = threading.Lock()


def one_pending_reevaluation(scheduler_class: Any) -> bool:
    """Make `scheduler_class._schedule_reevalutation` (sic) start a timer only when none is
    pending. Returns False, changing nothing, on a Snakemake without that method."""
    if not callable(getattr(scheduler_class, "_schedule_reevalutation", None)):
        return False
    if getattr(scheduler_class, "_elasticity_one_timer", False):
        return True

    def schedule_reevaluation(self, delay: float) -> None:
        with _PENDING_LOCK:
            if getattr(self, "_elasticity_timer_pending", False):
                return
            self._elasticity_timer_pending = True

        def wake() -> None:
            with _PENDING_LOCK:
                self._elasticity_timer_pending = False
            self._open_jobs.release()

        timer = threading.Timer(delay, wake)
        # A pending wake-up must not keep a finished run's process alive.
        timer.daemon = True
        timer.start()

    scheduler_class._schedule_reevalutation = schedule_reevaluation
    scheduler_class._elasticity_one_timer = True
    return True
