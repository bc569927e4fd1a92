"""`tongban sync` as an operator runs it: a foreground run with progress (log lines off
a terminal, a live bar on one), dead letters listed and replayed, and the commands that
talk to a running hub."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import StartHub
from rich.console import Console
from sync_testkit import (
    FILE_ADAPTER,
    rows,
    store_content,
    write_config,
    write_export,
)
from typer.testing import CliRunner

from certstore import migrate
from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import DeadLetterState, JobProgress, JobState, SyncJob, SyncMode
from exchange.cli import app
from exchange.cli.sync import ProgressBar

TONGBAN = str(Path(sys.executable).parent / "tongban")
runner = CliRunner()


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    migrate.upgrade(database_url)
    return write_config(
        tmp_path / "tongban.toml",
        database_url=database_url,
        data_dir=tmp_path / "data",
        exports=tmp_path / "exports",
        sync={"batch_size": 200},
    )


def tongban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TONGBAN, *args], capture_output=True, text=True, check=False)


def test_run_off_a_terminal_logs_structured_progress_and_a_summary(
    config: Path, tmp_path: Path, database_url: str
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(1000))

    first = runner.invoke(app, ["sync", "run", FILE_ADAPTER, "--config", str(config)])
    again = runner.invoke(app, ["sync", "run", FILE_ADAPTER, "--config", str(config)])

    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.output.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line["event"] == "sync progress"]
    assert progress[-1]["state"] == "SUCCEEDED"
    assert progress[-1]["records_seen"] == 1000
    assert {"records_per_second", "eta_seconds", "applied"} <= set(progress[-1])
    assert "sync job 1 SUCCEEDED: 1,000 records seen, 1,000 applied" in first.output
    assert again.exit_code == 0, again.output
    assert "sync job 2 SUCCEEDED: 0 records seen" in again.output
    database = Database.from_url(database_url)
    assert len(store_content(database, FILE_ADAPTER)) == 1000
    database.dispose()


def test_run_on_a_terminal_shows_a_live_progress_bar(config: Path, tmp_path: Path) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(3000))
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [TONGBAN, "sync", "run", FILE_ADAPTER, "--full", "--config", str(config)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)

    assert process.wait(timeout=60) == 0
    text = screen.decode("utf-8", "replace")
    assert "━" in text  # the bar
    assert "3,000/3,000 records" in text  # the CSV's total, counted at the start
    assert '{"' not in text  # no JSON log lines around the bar
    final = text[text.rindex("3,000/3,000 records") :].split("ETA")[0]
    assert " 0/s" not in final  # the end shows the job's average rate
    assert "/s" in text
    assert "ETA" in text
    assert "sync job 1 SUCCEEDED" in text


def test_progress_bar_shows_count_of_total_rate_and_eta() -> None:
    output = io.StringIO()
    job = SyncJob(
        job_id=7,
        adapter_id=FILE_ADAPTER,
        mode=SyncMode.FULL,
        state=JobState.RUNNING,
        trigger="manual",
        created_at=datetime.now(UTC),
        progress=JobProgress(
            records_seen=1000, applied=990, total_estimate=4000, records_per_second=250.0
        ),
    )

    with ProgressBar(Console(file=output, force_terminal=True, width=160)) as bar:
        bar.update(job)

    shown = output.getvalue()
    assert "1,000/4,000 records" in shown
    assert "250/s" in shown
    assert "ETA 0:00:12" in shown


def test_run_refuses_an_unknown_adapter_and_a_job_another_node_runs(
    config: Path, database_url: str
) -> None:
    unknown = tongban("sync", "run", "no.such", "--config", str(config))
    database = Database.from_url(database_url)
    other = SyncJobRepository(database).create_running(
        FILE_ADAPTER, SyncMode.FULL, "manual", "other-node:99", 60, datetime.now(UTC)
    )
    database.dispose()
    busy = tongban("sync", "run", FILE_ADAPTER, "--config", str(config))

    assert (unknown.returncode, unknown.stderr.splitlines()[-1]) == (
        1,
        "tongban: no adapter 'no.such' in the configuration or registrations",
    )
    assert busy.returncode == 1
    assert busy.stderr.splitlines()[-1] == (
        f"tongban: adapter {FILE_ADAPTER} is being synced by job {other.job.job_id} "
        "on other-node:99"
    )


def test_dead_letters_are_listed_masked_and_a_fixed_row_replays(
    config: Path, tmp_path: Path, database_url: str
) -> None:
    good = rows(3)
    bad_date = good[2].csv_cells()
    bad_date[4] = "2020-13-45"
    write_export(
        tmp_path / "exports" / "enrolment-0001.csv", good[:2], raw_lines=[",".join(bad_date)]
    )
    assert runner.invoke(app, ["sync", "run", FILE_ADAPTER, "-c", str(config)]).exit_code == 0

    listed = runner.invoke(app, ["sync", "deadletters", FILE_ADAPTER, "-c", str(config)])
    as_json = runner.invoke(app, ["sync", "deadletters", FILE_ADAPTER, "--json", "-c", str(config)])

    assert listed.exit_code == 0, listed.output
    assert "'2020-13-45' is not a date" in listed.output
    assert good[2].key not in listed.output  # the ID number is masked on screen
    assert good[2].key[:6] + "********" in listed.output
    letter = json.loads(as_json.output.strip().splitlines()[-1])
    assert letter["raw"]["证件号码"] == good[2].key
    assert letter["source_record_id"] == good[2].record_id

    replayed = runner.invoke(
        app,
        ["sync", "replay", str(letter["id"]), "--set", "参保日期=2020-01-31", "-c", str(config)],
    )
    again = tongban("sync", "replay", str(letter["id"]), "-c", str(config))

    assert replayed.exit_code == 0, replayed.output
    assert f"dead letter {letter['id']} replayed" in replayed.output
    database = Database.from_url(database_url)
    stored = store_content(database, FILE_ADAPTER)[good[2].record_id]
    state = SyncJobRepository(database).dead_letter(letter["id"]).state
    database.dispose()
    assert stored.fields["since"] == "2020-01-31"
    assert state is DeadLetterState.REPLAYED
    assert again.returncode == 1
    assert "only OPEN ones are replayed" in again.stderr


def test_a_replay_that_still_breaks_a_rule_keeps_the_dead_letter_open(
    config: Path, tmp_path: Path, database_url: str
) -> None:
    bad = rows(1)[0].csv_cells()
    bad[4] = "2020-13-45"
    write_export(tmp_path / "exports" / "enrolment-0001.csv", [], raw_lines=[",".join(bad)])
    runner.invoke(app, ["sync", "run", FILE_ADAPTER, "-c", str(config)])
    database = Database.from_url(database_url)
    letter = SyncJobRepository(database).dead_letters(FILE_ADAPTER)[0]

    still_bad = tongban(
        "sync", "replay", str(letter.dead_letter_id), "--set", "参保日期=soon", "-c", str(config)
    )

    assert still_bad.returncode == 1
    assert "row: field 'since' (from '参保日期'): 'soon' is not a date" in still_bad.stderr
    kept = SyncJobRepository(database).dead_letter(letter.dead_letter_id)
    database.dispose()
    assert kept.state is DeadLetterState.OPEN
    assert kept.reason == "field 'since' (from '参保日期'): 'soon' is not a date"


async def test_hub_commands_start_watch_status_list_and_cancel(
    start_hub: StartHub, tmp_path: Path
) -> None:
    write_export(tmp_path / "exports" / "enrolment-0001.csv", rows(2000))
    server = await start_hub(batch_size=100, max_records_per_second=2500)
    hub = ["--hub", f"127.0.0.1:{server.port}"]

    async def tongban_cli(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(runner.invoke, app, ["sync", *args, *hub])
        return result.exit_code, result.output

    started = await tongban_cli("start", FILE_ADAPTER, "--full", "--watch")
    status = await tongban_cli("status", "1")
    second = await tongban_cli("start", FILE_ADAPTER, "--full")
    await asyncio.sleep(0.4)
    cancelled = await tongban_cli("cancel", "2")
    watched = await tongban_cli("watch", "2")
    listed = await tongban_cli("list", "--state", "cancelled")
    bad_state = await tongban_cli("list", "--state", "sleeping")

    assert started[0] == 0, started[1]
    assert "started sync job 1 (FULL)" in started[1]
    assert "sync job 1 SUCCEEDED: 2,000 records seen, 2,000 applied" in started[1]
    assert status[0] == 0
    assert "SUCCEEDED" in status[1]
    assert "2,000" in status[1]
    assert second[0] == 0
    assert cancelled[0] == 0
    assert "sync job 2 stops at its next batch boundary" in cancelled[1]
    assert "sync job 2 CANCELLED" in watched[1]
    assert listed[0] == 0
    assert "CANCELLED" in listed[1]
    assert bad_state[0] != 0


def test_progress_bar_shows_the_average_rate_once_the_job_has_ended() -> None:
    output = io.StringIO()
    started = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)
    job = SyncJob(
        job_id=7,
        adapter_id=FILE_ADAPTER,
        mode=SyncMode.FULL,
        state=JobState.SUCCEEDED,
        trigger="manual",
        created_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=8),
        # An ended job's current rate is 0; the bar shows 4,000 records / 8 s.
        progress=JobProgress(records_seen=4000, applied=4000, records_per_second=0.0),
    )

    with ProgressBar(Console(file=output, force_terminal=True, width=160)) as bar:
        bar.update(job)

    shown = output.getvalue()
    assert "500/s" in shown
    assert " 0/s" not in shown
