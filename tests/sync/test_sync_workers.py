"""`tongban serve --workers 2`: two processes serve one port, and a schedule still runs
once per tick.

The supervisor starts two worker processes; both must hold a listening socket on the
same gRPC and HTTP API ports (SO_REUSEPORT) and answer on them, and the sync schedule they both run
must create one job per tick, each claimed by one worker. SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sync_testkit import (
    FILE_ADAPTER,
    expected_content,
    rows,
    store_content,
    write_config,
    write_export,
)

from certstore import migrate
from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import JobState

pytestmark = pytest.mark.slow

TONGBAN = str(Path(sys.executable).parent / "tongban")
SOURCE_ROWS = 300
_T = TypeVar("_T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], _T | None], what: str, timeout: float = 90) -> _T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(pid: int) -> list[int]:
    """The worker processes `pid` started (multiprocessing's spawn; not its resource
    tracker), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            if int(stat.rpartition(")")[2].split()[1]) != pid:
                continue
            with suppress(OSError):
                if b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rpartition(":")[2], 16) == port:
                inodes.add(inode)
    return inodes


def holds_socket(pid: int, inodes: set[str]) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def test_two_workers_share_the_port_and_run_each_tick_once(
    database_url: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    source = rows(SOURCE_ROWS)
    write_export(exports / "enrolment-0001.csv", source)
    migrate.upgrade(database_url)
    config = write_config(
        tmp_path / "tongban.toml",
        database_url=database_url,
        data_dir=tmp_path / "data",
        exports=exports,
        sync={"poll_seconds": 0.1, "misfire_grace_seconds": 0},
        schedules=[
            {"name": "every-2s", "adapter": FILE_ADAPTER, "every_seconds": 2, "mode": "full"}
        ],
    )
    port, api_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        supervisor = subprocess.Popen(
            [
                TONGBAN,
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            stdout=output,
            stderr=output,
            env={**os.environ, "TONGBAN_HTTP__API_LISTEN": f"127.0.0.1:{api_port}"},
        )
    database = Database.from_url(database_url)
    jobs = SyncJobRepository(database)
    try:
        workers = wait_for(
            lambda: (lambda found: found if len(found) >= 2 else None)(workers_of(supervisor.pid)),
            "two worker processes",
        )
        # Both workers hold a socket listening on the one port: neither failed to bind.
        wait_for(
            lambda: all(
                holds_socket(pid, listening_inodes(port))
                and holds_socket(pid, listening_inodes(api_port))
                for pid in workers
            ),
            "both workers listening on the gRPC and HTTP API ports",
        )
        assert len(workers) == 2
        # Fresh connections, spread over the workers by the kernel, are all answered.
        assert all(wait_for(lambda: serving(port), "SERVING") for _ in range(8))
        for _ in range(4):
            with urllib.request.urlopen(
                f"http://127.0.0.1:{api_port}/api/v1/openapi.json", timeout=10
            ) as answer:
                assert answer.status == 200
        wait_for(
            lambda: len(jobs.list_jobs(states=[JobState.SUCCEEDED])) >= 3,
            "three scheduled runs",
        )
        assert supervisor.poll() is None
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=90)
    text = log.read_text(encoding="utf-8")
    assert code == 0, text
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers left"

    # One job per tick, whichever worker created it; each claimed by one worker once.
    with database.engine.connect() as connection:
        per_tick = connection.execute(
            sa.text("SELECT scheduled_for, count(*) FROM sync_jobs GROUP BY scheduled_for")
        ).all()
    assert per_tick
    assert all(count == 1 for _, count in per_tick)
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    claims = Counter(e["job"] for e in events if e.get("event") == "sync job claimed")
    assert claims
    assert set(claims.values()) == {1}
    assert {e["worker_index"] for e in events if e.get("event") == "hub serving"} == {0, 1}
    assert store_content(database, FILE_ADAPTER) == expected_content(source)
    database.dispose()
