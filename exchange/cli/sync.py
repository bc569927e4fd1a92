"""`tongban sync`: run, watch and manage adapter sync jobs.

Two kinds of commands:

- ``run``, ``deadletters`` and ``replay`` open the hub's store themselves, from the
  configuration (``--config``): ``run`` syncs one adapter in the foreground, with a
  live progress bar on a terminal and a structured log line every few seconds
  otherwise. Ctrl-C (or SIGTERM) stops it at the next batch boundary with the cursor
  committed. A run that was killed is resumed by the next ``run`` of the adapter.
- ``start``, ``status``, ``list``, ``cancel`` and ``watch`` talk to a running hub over
  gRPC (``--hub``), whichever node runs the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, TextIO, cast

import grpc
import structlog
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from domain.errors import ConfigError, FailedPrecondition, InvalidRequest, NotFound
from domain.subjects import mask_identifiers
from domain.sync_jobs import (
    MANUAL_TRIGGER,
    DeadLetterState,
    JobLease,
    JobProgress,
    JobState,
    SyncJob,
    SyncMode,
)
from exchange.cli.client import (
    DevTokenOption,
    HubCallError,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
)
from exchange.generated import sync_pb2, sync_pb2_grpc
from exchange.logs import configure_logging
from exchange.settings import Settings, load_settings

if TYPE_CHECKING:
    from certstore.sync_jobs import SyncJobRepository
    from exchange.hub import Hub

app = typer.Typer(help="Run, watch and manage adapter sync jobs.", no_args_is_help=True)
log = structlog.get_logger("tongban.sync")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="TONGBAN_CONFIG", help="TOML configuration file."),
]
LOG_EVERY_SECONDS: Final = 5.0
_STATE_NAMES: Final = {
    sync_pb2.SYNC_JOB_STATE_PENDING: JobState.PENDING,
    sync_pb2.SYNC_JOB_STATE_RUNNING: JobState.RUNNING,
    sync_pb2.SYNC_JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    sync_pb2.SYNC_JOB_STATE_FAILED: JobState.FAILED,
    sync_pb2.SYNC_JOB_STATE_CANCELLED: JobState.CANCELLED,
}
_STATE_NUMBERS: Final = {state: number for number, state in _STATE_NAMES.items()}


# --- showing progress -----------------------------------------------------------------------


class ProgressView(Protocol):
    """Shows a job's progress as it moves."""

    def update(self, job: SyncJob) -> None: ...


class ProgressBar:
    """A live rich progress bar: count (of the total, when known), rate and ETA."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("[dim]{task.fields[outcomes]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._logging: dict[str, Any] = {}

    def __enter__(self) -> ProgressBar:
        # While the bar is live, the hub's info lines (what the bar shows) are dropped;
        # warnings and errors are printed readably above it, not as JSON.
        self._logging = structlog.get_config()
        stream = cast("TextIO", _ConsoleStream(self._progress.console))
        configure_logging("WARNING", "console", stream=stream)
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()
        structlog.configure(**self._logging)

    def update(self, job: SyncJob) -> None:
        progress = job.progress
        count, rate, eta, outcomes = _display_fields(job)
        description = f"job {job.job_id} {job.adapter_id} {job.mode.value.lower()}"
        if self._task is None:
            self._task = self._progress.add_task(
                description,
                total=progress.total_estimate,
                count=count,
                rate=rate,
                eta=eta,
                outcomes=outcomes,
            )
        self._progress.update(
            self._task,
            description=description,
            completed=progress.records_seen,
            total=progress.total_estimate,
            count=count,
            rate=rate,
            eta=eta,
            outcomes=outcomes,
        )


class _ConsoleStream:
    """A text stream printing through a rich console (above its live display)."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        if text.strip():
            self._console.print(text.rstrip("\n"), markup=False, highlight=False)
        return len(text)

    def flush(self) -> None:
        return None


class ProgressLog:
    """Structured progress lines, at most one per `every` seconds (and the last one)."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self._every = every
        self._last = 0.0

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def update(self, job: SyncJob) -> None:
        now = time.monotonic()
        if not job.state.finished and now - self._last < self._every:
            return
        self._last = now
        progress = job.progress
        eta = progress.eta_seconds
        log.info(
            "sync progress",
            job=job.job_id,
            adapter=job.adapter_id,
            state=job.state.value,
            records_seen=progress.records_seen,
            total_estimate=progress.total_estimate,
            records_per_second=round(progress.records_per_second, 1),
            eta_seconds=None if eta is None else round(eta),
            applied=progress.applied,
            unchanged=progress.unchanged,
            dead_lettered=progress.dead_lettered,
            withdrawn=progress.withdrawn,
        )


def _rate_of(job: SyncJob) -> float:
    """The current rate while the job runs; once it has ended (its current rate is 0),
    its average over the run, from start to end."""
    progress = job.progress
    if not job.state.finished or job.started_at is None or job.finished_at is None:
        return progress.records_per_second
    seconds = (job.finished_at - job.started_at).total_seconds()
    return progress.records_seen / seconds if seconds > 0 else 0.0


def _display_fields(job: SyncJob) -> tuple[str, str, str, str]:
    """Count (of the total), rate, ETA and outcomes, as the progress bar shows them."""
    progress = job.progress
    total = progress.total_estimate
    count = f"{progress.records_seen:,}" + (f"/{total:,}" if total is not None else "")
    eta = progress.eta_seconds
    return (
        count + " records",
        f"{_rate_of(job):,.0f}/s",
        "ETA " + (_clock_text(eta) if eta is not None else "?"),
        f"applied {progress.applied:,} · unchanged {progress.unchanged:,} · "
        f"dead {progress.dead_lettered:,} · withdrawn {progress.withdrawn:,}",
    )


def _clock_text(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@contextlib.contextmanager
def progress_view(console: Console) -> Iterator[ProgressView]:
    """A progress bar on a terminal, structured log lines otherwise."""
    view: ProgressBar | ProgressLog = ProgressBar(console) if console.is_terminal else ProgressLog()
    with view:
        yield view


# --- running in the foreground --------------------------------------------------------------


@app.command("run")
def run(
    adapter_id: Annotated[str, typer.Argument(metavar="ADAPTER", help="The adapter's id.")],
    full: Annotated[
        bool,
        typer.Option("--full", help="Read everything and withdraw what disappeared."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Sync ADAPTER into the hub's store now, in the foreground (resumes a killed run)."""
    from exchange.hub import Hub

    settings = _settings(config)
    if Console(stderr=True).is_terminal:
        # The progress bar shows what the info lines would say; see ProgressBar.
        configure_logging("WARNING", "console")
    hub = Hub.open(settings)
    try:
        adapter = next((a for a in hub.adapters if a.adapter_id == adapter_id), None)
        if adapter is None:
            raise NotFound(f"no adapter {adapter_id!r} in the configuration or registrations")
        job = asyncio.run(
            _run_in_foreground(hub, adapter_id, SyncMode.FULL if full else SyncMode.INCREMENTAL)
        )
    finally:
        asyncio.run(hub.close_adapters(hub.adapters))
        hub.database.dispose()
    _print_end(job)
    if job.state is JobState.FAILED:
        raise typer.Exit(1)
    if job.state is JobState.CANCELLED:
        raise typer.Exit(130)


async def _run_in_foreground(hub: Hub, adapter_id: str, mode: SyncMode) -> SyncJob:
    from certstore.records import cipher_of
    from certstore.sync_jobs import SyncJobRepository
    from exchange.sync.runner import SyncRunner
    from exchange.sync.worker import worker_name

    settings = hub.settings
    repository = SyncJobRepository(hub.database, cipher_of(hub.records), hub.records.hash_alg)
    name = worker_name(settings.sync)
    lease = await asyncio.to_thread(_lease_for_run, repository, settings, adapter_id, mode, name)
    console = Console(stderr=True)
    if lease.taken_over:
        console.print(
            f"resuming {lease.job.mode.value} job {lease.job.job_id} of {adapter_id} "
            f"from its last committed batch ({lease.job.progress.records_seen:,} records seen)"
        )
    adapter = next(a for a in hub.adapters if a.adapter_id == adapter_id)
    with progress_view(console) as view:
        view.update(lease.job)
        runner = SyncRunner(
            repository, adapter, hub.record_types, settings.sync, on_progress=view.update
        )
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, runner.cancel)
        try:
            return await runner.run(lease)
        finally:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signal_number)


def _lease_for_run(
    repository: SyncJobRepository,
    settings: Settings,
    adapter_id: str,
    mode: SyncMode,
    name: str,
) -> JobLease:
    """A new RUNNING job, or the adapter's interrupted one, taken over to resume it.

    Raises `AdapterBusy` when a live node runs the adapter's job.
    """
    from certstore.sync_jobs import AdapterBusy

    sync = settings.sync
    now = datetime.now(UTC)
    running = repository.running_job(adapter_id)
    if running is not None:
        expired = running.lease_expires_at is None or running.lease_expires_at < now
        dead_here = _is_dead_local_worker(running.worker, name)
        if not (expired or dead_here):
            raise AdapterBusy(adapter_id, running)
        return repository.take_over(running.job_id, name, sync.lease_seconds, now, force=dead_here)
    return repository.create_running(
        adapter_id, mode, MANUAL_TRIGGER, name, sync.lease_seconds, now
    )


def _is_dead_local_worker(worker: str, me: str) -> bool:
    """True when `worker` names a process of this node that no longer exists."""
    node, _, pid_text = worker.rpartition(":")
    my_node = me.rpartition(":")[0]
    if node != my_node or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _print_end(job: SyncJob) -> None:
    progress = job.progress
    line = (
        f"sync job {job.job_id} {job.state.value}: {progress.records_seen:,} records seen, "
        f"{progress.applied:,} applied, {progress.unchanged:,} unchanged, "
        f"{progress.dead_lettered:,} dead-lettered, {progress.withdrawn:,} withdrawn"
    )
    typer.echo(line, err=True)
    if job.error:
        typer.echo(f"error: {job.error}", err=True)


# --- dead letters -----------------------------------------------------------------------------


@app.command("deadletters")
def deadletters(
    adapter_id: Annotated[str, typer.Argument(metavar="ADAPTER", help="The adapter's id.")],
    config: ConfigOption = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also replayed and superseded ones.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per line, raw rows unmasked (to fix them)."),
    ] = False,
) -> None:
    """List ADAPTER's dead letters: rows a sync refused, with the reason."""
    from certstore.sync_jobs import SyncJobRepository
    from exchange.hub import open_store

    settings = _settings(config)
    database = open_store(settings)
    try:
        letters = SyncJobRepository(database).dead_letters(
            adapter_id, states=() if show_all else (DeadLetterState.OPEN,), limit=limit
        )
    finally:
        database.dispose()
    if as_json:
        for letter in letters:
            typer.echo(
                json.dumps(
                    {
                        "id": letter.dead_letter_id,
                        "adapter_id": letter.adapter_id,
                        "job_id": letter.job_id,
                        "record_type": letter.record_type,
                        "source_record_id": letter.source_record_id,
                        "reason": letter.reason,
                        "state": letter.state.value,
                        "created_at": letter.created_at.isoformat(),
                        "raw": letter.raw,
                        "record": letter.record,
                    },
                    ensure_ascii=False,
                )
            )
        return
    table = Table("id", "job", "record type", "source record", "reason", "state", "row (masked)")
    for letter in letters:
        shown = "" if letter.raw is None else json.dumps(letter.raw, ensure_ascii=False)
        table.add_row(
            str(letter.dead_letter_id),
            str(letter.job_id or "-"),
            letter.record_type,
            mask_identifiers(letter.source_record_id),
            letter.reason,
            letter.state.value,
            mask_identifiers(shown),
        )
    Console(width=200).print(table)
    if not letters:
        typer.echo(f"no {'' if show_all else 'open '}dead letters for {adapter_id}", err=True)


@app.command("replay")
def replay(
    dead_letter_id: Annotated[
        int, typer.Argument(metavar="ID", help="The dead letter's id (see deadletters).")
    ],
    row_file: Annotated[
        Path | None,
        typer.Option("--row", help="JSON file with the fixed row ('-': standard input)."),
    ] = None,
    set_fields: Annotated[
        list[str] | None,
        typer.Option("--set", help="FIELD=VALUE to change in the row (repeatable)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Apply dead letter ID once its row (or the configuration) is fixed.

    Without --row the kept row is used, changed by --set; with neither, the kept row
    is mapped again (for a fix made in the configuration).
    """
    from certstore.records import cipher_of
    from certstore.sync_jobs import SyncJobRepository
    from exchange.hub import Hub
    from exchange.sync.replay import replay_dead_letter

    settings = _settings(config)
    hub = Hub.open(settings)
    try:
        repository = SyncJobRepository(hub.database, cipher_of(hub.records), hub.records.hash_alg)
        adapter_id = repository.dead_letter(dead_letter_id).adapter_id
        adapter = next((a for a in hub.adapters if a.adapter_id == adapter_id), None)
        if adapter is None:
            raise NotFound(f"adapter {adapter_id!r} of dead letter {dead_letter_id} is gone")
        fixed = _fixed_row(repository, dead_letter_id, row_file, set_fields or [])
        letter = asyncio.run(
            replay_dead_letter(
                repository, adapter, hub.record_types, dead_letter_id, fixed_row=fixed
            )
        )
    finally:
        asyncio.run(hub.close_adapters(hub.adapters))
        hub.database.dispose()
    typer.echo(
        f"dead letter {letter.dead_letter_id} replayed: {letter.record_type} "
        f"{mask_identifiers(letter.source_record_id)} stored"
    )


def _fixed_row(
    repository: SyncJobRepository, dead_letter_id: int, row_file: Path | None, changes: list[str]
) -> Mapping[str, Any] | None:
    row: dict[str, Any] | None = None
    if row_file is not None:
        text = sys.stdin.read() if str(row_file) == "-" else _read(row_file)
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest("--row", f"not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidRequest("--row", "must be one JSON object (the fixed row)")
        row = loaded
    if changes:
        if row is None:
            kept = repository.dead_letter(dead_letter_id).raw
            if kept is None:
                raise FailedPrecondition(
                    f"dead letter {dead_letter_id} kept no row to change; give --row"
                )
            row = dict(kept)
        for change in changes:
            field, separator, value = change.partition("=")
            if not separator or not field:
                raise InvalidRequest("--set", f"{change!r} is not FIELD=VALUE")
            row[field] = value
    return row


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--row", f"cannot read {path}: {exc.strerror}") from exc


# --- talking to a running hub -----------------------------------------------------------------


def _stub(channel: grpc.Channel) -> sync_pb2_grpc.SyncServiceStub:
    return sync_pb2_grpc.SyncServiceStub(channel)


def _call(connection: HubConnection, method: str, request: Any) -> Any:
    return connection.call(sync_pb2_grpc.SyncServiceStub, method, request, timeout=10)


@app.command("start")
def start(
    adapter_id: Annotated[str, typer.Argument(metavar="ADAPTER", help="The adapter's id.")],
    full: Annotated[bool, typer.Option("--full", help="A FULL job instead of INCREMENTAL.")] = (
        False
    ),
    watch_it: Annotated[bool, typer.Option("--watch", help="Follow it until it ends.")] = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Ask a running hub to sync ADAPTER; one of its nodes runs the job."""
    mode = sync_pb2.SYNC_MODE_FULL if full else sync_pb2.SYNC_MODE_INCREMENTAL
    answer = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "Start",
        sync_pb2.SyncServiceStartRequest(adapter_id=adapter_id, mode=mode),
    )
    typer.echo(f"started sync job {answer.job.job_id} ({_mode_name(answer.job.mode)})")
    if watch_it:
        watch(answer.job.job_id, hub, dev_token, tls_ca, tls_cert, tls_key)


@app.command("status")
def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job's id.")],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Show one job: state, progress, worker, error."""
    job = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "Get",
        sync_pb2.SyncServiceGetRequest(job_id=job_id),
    ).job
    progress = job.progress
    table = Table(show_header=False)
    rows = [
        ("job", job.job_id),
        ("adapter", job.adapter_id),
        ("mode", _mode_name(job.mode)),
        ("state", _state_name(job.state)),
        ("trigger", job.trigger),
        ("worker", job.worker or "-"),
        ("created", _when(job.created_at, job.HasField("created_at"))),
        ("started", _when(job.started_at, job.HasField("started_at"))),
        ("finished", _when(job.finished_at, job.HasField("finished_at"))),
        ("records seen", f"{progress.records_seen:,}"),
        ("total (estimate)", f"{progress.total_estimate:,}" if progress.total_estimate else "-"),
        ("applied", f"{progress.applied:,}"),
        ("unchanged", f"{progress.unchanged:,}"),
        ("dead-lettered", f"{progress.dead_lettered:,}"),
        ("withdrawn", f"{progress.withdrawn:,}"),
        ("rate", f"{progress.records_per_second:,.0f}/s"),
        (
            "eta",
            _clock_text(progress.eta.ToTimedelta().total_seconds())
            if progress.HasField("eta")
            else "-",
        ),
        ("error", job.error or "-"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


@app.command("list")
def list_jobs(
    adapter_id: Annotated[
        str | None, typer.Option("--adapter", help="Only this adapter's jobs.")
    ] = None,
    states: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only jobs in this state (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many.")] = 50,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List sync jobs, newest first."""
    numbers = []
    for name in states or []:
        try:
            numbers.append(_STATE_NUMBERS[JobState(name.upper())])
        except ValueError as exc:
            known = ", ".join(state.value for state in JobState)
            raise InvalidRequest("--state", f"{name!r} is not one of {known}") from exc
    answer = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "List",
        sync_pb2.SyncServiceListRequest(
            adapter_id=adapter_id or "", states=numbers, page_size=limit
        ),
    )
    table = Table(
        "job", "adapter", "mode", "state", "trigger", "seen", "applied", "worker", "error"
    )
    for job in answer.jobs:
        table.add_row(
            job.job_id,
            job.adapter_id,
            _mode_name(job.mode),
            _state_name(job.state),
            job.trigger,
            f"{job.progress.records_seen:,}",
            f"{job.progress.applied:,}",
            job.worker or "-",
            job.error[:60] or "-",
        )
    Console(width=200).print(table)


@app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job's id.")],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Cancel a job; a running one stops at its next batch boundary, cursor committed."""
    job = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "Cancel",
        sync_pb2.SyncServiceCancelRequest(job_id=job_id),
    ).job
    state = _state_name(job.state)
    if state == JobState.RUNNING.value:
        typer.echo(f"sync job {job.job_id} stops at its next batch boundary")
    else:
        typer.echo(f"sync job {job.job_id} {state}")


@app.command("watch")
def watch(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job's id.")],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Follow a job's progress until it ends (a progress bar on a terminal)."""
    console = Console(stderr=True)
    last: SyncJob | None = None
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    with connection.channel() as channel, progress_view(console) as view:
        try:
            for answer in _stub(channel).Watch(sync_pb2.SyncServiceWatchRequest(job_id=job_id)):
                last = _job_from_proto(answer.job)
                view.update(last)
        except grpc.RpcError as exc:
            raise HubCallError(f"{exc.code().name}: {exc.details()}") from exc
    if last is not None:
        _print_end(last)
        if last.state is JobState.FAILED:
            raise typer.Exit(1)


def _job_from_proto(message: sync_pb2.SyncJob) -> SyncJob:
    progress = message.progress
    return SyncJob(
        job_id=int(message.job_id),
        adapter_id=message.adapter_id,
        mode=SyncMode.FULL if message.mode == sync_pb2.SYNC_MODE_FULL else SyncMode.INCREMENTAL,
        state=_STATE_NAMES.get(message.state, JobState.PENDING),
        trigger=message.trigger,
        created_at=message.created_at.ToDatetime(UTC),
        progress=JobProgress(
            records_seen=progress.records_seen,
            applied=progress.applied,
            unchanged=progress.unchanged,
            dead_lettered=progress.dead_lettered,
            withdrawn=progress.withdrawn,
            total_estimate=progress.total_estimate or None,
            records_per_second=progress.records_per_second,
        ),
        error=message.error,
        worker=message.worker,
    )


def _mode_name(number: sync_pb2.SyncMode.ValueType) -> str:
    return sync_pb2.SyncMode.Name(number).removeprefix("SYNC_MODE_")


def _state_name(number: sync_pb2.SyncJobState.ValueType) -> str:
    return sync_pb2.SyncJobState.Name(number).removeprefix("SYNC_JOB_STATE_")


def _when(stamp: Timestamp, present: bool) -> str:
    return stamp.ToDatetime(UTC).isoformat(timespec="seconds") if present else "-"


def _settings(config: Path | None) -> Settings:
    settings = load_settings(config)
    configure_logging(settings.logging.level, settings.logging.format)
    return settings
