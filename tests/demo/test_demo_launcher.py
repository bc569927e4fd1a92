"""`DemoWorld`: outages of one department, restarts, failures to start, and no process
left behind however the world ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adapters.resilience import CircuitState
from domain.errors import AdapterError, FailedPrecondition
from domain.subjects import KeyKind, parse_key
from exchange.demo.departments import DEPARTMENTS
from exchange.demo.launcher import ADAPTER_IDS, DemoWorld, DepartmentStartError

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie nobody has reaped yet counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    expires = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > expires:
            return False
        time.sleep(0.05)
    return True


async def test_a_stopped_department_fails_while_the_others_answer(
    small_world: DemoWorld, build_adapters, purpose
):
    adapters = build_adapters(small_world.settings())
    showcase = small_world.showcase
    resident = parse_key(KeyKind.ID_CARD, showcase.id_card)
    population = adapters[ADAPTER_IDS["population"]]
    realestate = adapters[ADAPTER_IDS["realestate"]]
    assert (await population.fetch(resident, ["population.resident"], purpose)).records

    assert small_world.stop_department("population") == 0
    assert "population" not in small_world.running
    started = time.monotonic()
    with pytest.raises(AdapterError, match="UNAVAILABLE"):
        await population.fetch(resident, ["population.resident"], purpose, deadline=2.0)
    assert time.monotonic() - started < 2.0
    assert (await realestate.fetch(resident, ["realestate.title"], purpose)).records
    for name in ("business", "social-security"):
        adapter = adapters[ADAPTER_IDS[name]]
        answer = await adapter.fetch(resident, list(adapter.spec.serves), purpose)
        assert answer.records, name
    assert population.circuit_state is CircuitState.CLOSED


async def test_a_restarted_department_serves_on_its_old_address(
    small_world: DemoWorld, build_adapters, purpose
):
    before = small_world.ready("realestate")
    small_world.stop_department("realestate")
    with pytest.raises(FailedPrecondition):
        small_world.stop_department("realestate")
    small_world.restart_department("realestate")
    assert small_world.ready("realestate")["base_url"] == before["base_url"]
    realestate = build_adapters(small_world.settings())[ADAPTER_IDS["realestate"]]
    cert = parse_key(KeyKind.REAL_ESTATE_CERT, small_world.showcase.certificate_number)
    assert (await realestate.fetch(cert, ["realestate.title"], purpose)).records


def test_stop_ends_every_department_cleanly(tmp_path: Path):
    demo = DemoWorld(tmp_path, residents=300, companies=30)
    with demo:
        pids = demo.running
        assert sorted(pids) == sorted(DEPARTMENTS)
        assert all(alive(pid) for pid in pids.values())
    assert demo.running == {}
    assert not any(alive(pid) for pid in pids.values())
    assert demo.stop() == {}


def test_leaving_the_context_on_an_error_stops_the_world(tmp_path: Path):
    demo = DemoWorld(tmp_path, residents=300, companies=30)
    pids: list[int] = []

    def walkthrough_that_breaks() -> None:
        with demo:
            pids.extend(demo.running.values())
            raise RuntimeError("the walkthrough broke")

    with pytest.raises(RuntimeError, match="the walkthrough broke"):
        walkthrough_that_breaks()
    assert len(pids) == len(DEPARTMENTS)
    assert not any(alive(pid) for pid in pids)


def test_a_department_that_cannot_start_is_named_and_nothing_stays_up(tmp_path: Path):
    demo = DemoWorld(tmp_path, residents=50, companies=30, startup_timeout=20)
    with pytest.raises(DepartmentStartError, match="need at least 300 residents") as caught:
        demo.start()
    assert "did not start" in str(caught.value)
    assert "exited with status 1" in str(caught.value)
    assert demo.running == {}
    with pytest.raises(FailedPrecondition, match="never started"):
        demo.settings()


def test_departments_stop_when_their_launcher_is_killed(tmp_path: Path):
    launcher = textwrap.dedent(
        f"""
        from pathlib import Path
        from exchange.demo.launcher import DemoWorld
        demo = DemoWorld(Path({str(tmp_path)!r}), residents=300, companies=30).start()
        print(" ".join(str(pid) for pid in demo.running.values()), flush=True)
        input()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == len(DEPARTMENTS)
    process.kill()
    process.wait()
    process.stdout.close()
    process.stdin.close()
    # Orphans are reparented (not our children): they are gone once they exit.
    assert all(gone_within(pid, 5) for pid in pids)
