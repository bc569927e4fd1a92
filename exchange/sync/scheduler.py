"""`SyncScheduler`: starts the configured schedules' jobs at their ticks.

Every node runs the same schedules. At a tick each node asks the store for the tick's
job, and the store creates it once (one job per trigger and tick); which node then
runs it is decided by the claim, like any other job. A schedule whose previous job is
still PENDING skips its tick (ticks coalesce rather than pile up). A tick missed while
no node ran is still started after a restart when it is at most
`sync.misfire_grace_seconds` old.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from certstore.sync_jobs import SyncJobRepository
from domain.errors import TongbanError
from domain.sync_jobs import SyncJob, SyncMode, schedule_trigger
from exchange.settings import SyncScheduleSettings, SyncSettings
from exchange.sync.schedule import CronSchedule, IntervalSchedule, Schedule

__all__ = ["ScheduledSync", "SyncScheduler"]

log = structlog.get_logger("tongban.sync")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ScheduledSync:
    """One configured schedule: which adapter, which mode, when."""

    name: str
    adapter_id: str
    mode: SyncMode
    schedule: Schedule

    @classmethod
    def from_settings(cls, settings: SyncScheduleSettings) -> ScheduledSync:
        """Build from validated settings (which have checked the cron expression)."""
        schedule: Schedule
        if settings.cron is not None:
            schedule = CronSchedule.parse(settings.cron, settings.utc_offset)
        else:
            assert settings.every_seconds is not None
            schedule = IntervalSchedule(settings.every_seconds)
        return cls(settings.name, settings.adapter, SyncMode(settings.mode.upper()), schedule)

    @property
    def trigger(self) -> str:
        return schedule_trigger(self.name)


class SyncScheduler:
    """Creates the jobs of due schedule ticks, on every node alike."""

    def __init__(
        self,
        repository: SyncJobRepository,
        schedules: Sequence[ScheduledSync],
        settings: SyncSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_created: Callable[[SyncJob], None] | None = None,
    ) -> None:
        self._repository = repository
        self._schedules = list(schedules)
        self._settings = settings
        self._clock = clock
        self._on_created = on_created
        # The last tick handled per schedule; None until the first pass.
        self._handled: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        repository: SyncJobRepository,
        settings: SyncSettings,
        *,
        on_created: Callable[[SyncJob], None] | None = None,
    ) -> SyncScheduler:
        """A scheduler of the enabled schedules in `settings`."""
        schedules = [
            ScheduledSync.from_settings(schedule)
            for schedule in settings.schedules
            if schedule.enabled
        ]
        return cls(repository, schedules, settings, on_created=on_created)

    def start(self) -> None:
        """Start ticking on the running event loop (no-op without schedules)."""
        if self._schedules and self._task is None:
            self._task = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def tick(self, now: datetime) -> list[SyncJob]:
        """Create the jobs of the ticks due at `now`; returns the ones created here.

        Raises `StoreError` when the store cannot be reached (the tick is tried again).
        """
        created: list[SyncJob] = []
        for scheduled in self._schedules:
            due = scheduled.schedule.latest_at_or_before(now)
            handled = self._handled.get(scheduled.name)
            if handled is None:
                late = (now - due).total_seconds()
                if late > self._settings.misfire_grace_seconds:
                    self._handled[scheduled.name] = due
                    continue
            elif due <= handled:
                continue
            job = await asyncio.to_thread(
                self._repository.create,
                scheduled.adapter_id,
                scheduled.mode,
                scheduled.trigger,
                now,
                scheduled_for=due,
            )
            self._handled[scheduled.name] = due
            if job is not None:
                log.info(
                    "scheduled sync job created",
                    job=job.job_id,
                    schedule=scheduled.name,
                    adapter=scheduled.adapter_id,
                    tick=due.isoformat(),
                )
                created.append(job)
                if self._on_created is not None:
                    self._on_created(job)
        return created

    def next_tick(self, now: datetime) -> datetime | None:
        """The earliest tick of any schedule after `now`."""
        ticks = [scheduled.schedule.next_after(now) for scheduled in self._schedules]
        return min(ticks) if ticks else None

    async def _tick_forever(self) -> None:
        while True:
            now = self._clock()
            try:
                await self.tick(now)
            except TongbanError as exc:
                log.warning("schedule ticks not handled", error=exc.message)
            upcoming = self.next_tick(now)
            wait = self._settings.poll_seconds
            if upcoming is not None:
                wait = min(wait, max(0.0, (upcoming - self._clock()).total_seconds()) + 0.01)
            await asyncio.sleep(wait)
