"""The scheduler fix (elasticity.scheduling) on Snakemake's own JobScheduler method."""

from __future__ import annotations

import threading
import time

from snakemake.scheduling.job_scheduler import JobScheduler

from elasticity.scheduling import one_pending_reevaluation


def scheduler_like():
    """A class with the real method and the one attribute it uses, so no workflow is needed."""
    cls = type("Scheduler", (), {"_schedule_reevalutation":
                                 JobScheduler.__dict__["_schedule_reevalutation"]})
    obj = cls()
    obj._open_jobs = threading.Semaphore(0)
    return cls, obj


def wakeups(obj, calls: int, delay: float = 0.05) -> int:
    for _ in range(calls):
        obj._schedule_reevalutation(delay)
    time.sleep(delay * 6)
    woken = 0
    while obj._open_jobs.acquire(blocking=False):
        woken += 1
    return woken


def test_snakemake_starts_a_timer_per_round_and_the_fix_one():
    cls, obj = scheduler_like()
    # The behaviour being fixed: every round leaves a wake-up of its own behind.
    assert wakeups(obj, 5) == 5
    assert one_pending_reevaluation(cls) and one_pending_reevaluation(cls)
    assert wakeups(obj, 5) == 1
    # Once the pending one has fired, the next round may start another.
    assert wakeups(obj, 3) == 1


def test_a_pending_wakeup_does_not_keep_the_process_alive():
    cls, obj = scheduler_like()
    one_pending_reevaluation(cls)
    obj._schedule_reevalutation(60)
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    assert timers and all(t.daemon for t in timers)
    for t in timers:
        t.cancel()


def test_a_snakemake_without_the_method_is_left_alone():
    cls = type("Other", (), {})
    assert not one_pending_reevaluation(cls)
    assert not hasattr(cls, "_schedule_reevalutation")
