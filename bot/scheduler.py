"""Scheduled jobs (APScheduler 3.x): they only wake services; state lives in the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)


def make_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    )


def guarded(name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A job whose failure is logged and does not stop the schedule."""

    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:  # the scheduler's shutdown: jobs are sweeps, run again
            log.info("scheduled job %s stopped for shutdown", name)
        except Exception:
            log.exception("scheduled job %s failed", name)

    run.__name__ = name
    return run
