"""`tongban demo` tells the whole story on the embedded default and exits 0; with
`--keep-running` the world stays up for exploring and Ctrl-C stops every process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from domain.errors import ConfigError
from exchange.demo.tour import DEMO_ENTRIES, DEMO_MARKER, _fresh_folder, run_tour

TONGBAN = str(Path(sys.executable).parent / "tongban")
SMALL_WORLD = ("--residents", "300", "--companies", "30")


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions `text` (the test's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


async def tell(folder: Path) -> str:
    out = io.StringIO()
    await run_tour(folder, console=Console(file=out, width=140), residents=300, companies=30)
    return out.getvalue()


async def test_the_tour_tells_every_step(tmp_path):
    told = await tell(tmp_path)
    steps = [
        "One lookup, four departments",
        "A legacy organization code finds the company",
        "issues a business-licence e-certificate",
        "verifies it online",
        "offline, with the trust bundle",
        "The hall keeps evidence",
        "department signature psb.population/",
        "RECEIPT VALID",
        "QR code",
        "verification now fails on STATUS",
        "One department goes down",
        "Served from the store",
        "syncs the national social-security exports",
        "Conditional data: the hall applies, the ministry decides",
        "apply for access to social_security.enrolment",
        "PENDING",
        "APPROVED",
        "exactly the granted fields came back (insurance, status)",
        "who looked at their data",
        "demo finished",
    ]
    positions = [told.index(step) for step in steps]
    assert positions == sorted(positions)
    assert told.count("\nVALID") == 1
    assert "NOT VALID" in told
    assert "STALE_SERVED" in told
    assert "SUCCEEDED" in told
    assert "2 dead-lettered" in told
    assert "LOOKUP PARTIAL" in told
    assert (tmp_path / "licence-qr.png").stat().st_size > 1000
    assert processes_mentioning(str(tmp_path)) == []

    assert "job 1 SUCCEEDED" in told

    # A second run starts from an empty folder: a new world and store, not this one's
    # (whose licence is revoked already: issuing it again returned that one).
    made = sorted(p.name for p in tmp_path.iterdir())
    _fresh_folder(tmp_path)
    assert made == sorted(DEMO_ENTRIES)
    assert [p.name for p in tmp_path.iterdir()] == [DEMO_MARKER]


async def test_a_folder_the_demo_did_not_make_is_left_alone(tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(ConfigError, match="holds files the demo did not make"):
        await tell(tmp_path)
    assert keep.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_keep_running_stays_up_until_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [TONGBAN, "demo", "--keep-running", "--data-dir", str(tmp_path), *SMALL_WORLD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        _explore_then_stop(process, tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _explore_then_stop(process: subprocess.Popen[str], tmp_path: Path) -> None:
    hub = None
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    for line in process.stdout:
        if "tongban status --hub" in line:
            hub = line.split("--hub ")[1].split("`")[0]
            break
        assert time.monotonic() < deadline, "the demo did not come up"
    assert hub, "the demo never said it stays up"
    assert len(processes_mentioning(str(tmp_path))) >= 5  # the demo and four departments
    status = subprocess.run(
        [TONGBAN, "status", "--hub", hub],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "SERVING" in status.stdout
    assert "hrss.social-security" in status.stdout
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode == 0
    time.sleep(0.5)
    assert processes_mentioning(str(tmp_path)) == []


# Each hog spins one core and stops by itself after at most this long, even if the test
# that started it is killed before its clean-up.
_HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def test_the_demo_passes_with_both_cores_busy(tmp_path):
    """`tongban demo` with two CPU hogs beside it (issue 16 §3: it used to give up at the
    outage step, "the hub cannot reach population after its restart")."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=300)])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        run = subprocess.run(
            [TONGBAN, "demo", "--data-dir", str(tmp_path / "demo"), *SMALL_WORLD],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
            env={**os.environ, "COLUMNS": "140"},
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "the population registry is back" in run.stdout
    assert "demo finished" in run.stdout


@pytest.mark.parametrize("where", ["/etc/passwd", "/etc/passwd/demo"])
async def test_a_data_dir_that_is_no_folder_is_one_line(where):
    with pytest.raises(ConfigError, match="cannot use /etc/passwd"):
        await tell(Path(where))
