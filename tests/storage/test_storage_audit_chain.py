"""The audit chain detects and locates every kind of tampering done directly in SQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from certstore.audit import AuditEntry, AuditLog
from certstore.database import Database

TONGBAN = str(Path(sys.executable).parent / "tongban")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def entries(count: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            at=START + timedelta(minutes=n),
            caller="91350100M000100Y43/hall-approval",
            action="LOOKUP",
            outcome="OK",
            subject_digest=f"{n:064x}",
            subject_masked="110105********002X",
            detail={"purpose": {"case_id": f"C-{n}", "reason": "企业开办"}, "n": n},
        )
        for n in range(1, count + 1)
    ]


@pytest.fixture
def chain(database: Database) -> AuditLog:
    log = AuditLog(database)
    log.append(entries(4))
    log.append(entries(6)[4:])  # two appends: the chain continues across transactions
    return log


def execute(database: Database, *statements: str) -> None:
    with database.core_transaction() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))


TAMPERING = [
    (
        "edit a field",
        ["UPDATE audit_log SET caller = 'someone-else' WHERE sequence = 3"],
        3,
        "entry 3 was edited",
    ),
    (
        "edit the outcome",
        ["UPDATE audit_log SET outcome = 'DENIED' WHERE sequence = 5"],
        5,
        "entry 5 was edited",
    ),
    (
        "edit the purpose in the JSON detail",
        ["""UPDATE audit_log SET detail = '{"purpose": {"case_id": "C-9"}}' WHERE sequence = 4"""],
        4,
        "entry 4 was edited",
    ),
    ("delete a middle entry", ["DELETE FROM audit_log WHERE sequence = 2"], 2, "missing"),
    ("delete the first entry", ["DELETE FROM audit_log WHERE sequence = 1"], 1, "missing"),
    ("delete the newest entry", ["DELETE FROM audit_log WHERE sequence = 6"], 6, "deleted"),
    (
        "reorder two entries",
        [
            "UPDATE audit_log SET sequence = -4 WHERE sequence = 4",
            "UPDATE audit_log SET sequence = 4 WHERE sequence = 5",
            "UPDATE audit_log SET sequence = 5 WHERE sequence = -4",
        ],
        4,
        "does not follow",
    ),
    (
        "edit and re-link the next entry's prev hash",
        [
            "UPDATE audit_log SET caller = 'x' WHERE sequence = 2",
            "UPDATE audit_log SET prev_hash = 'f' WHERE sequence = 3",
        ],
        2,
        "edited",
    ),
]


def test_an_untouched_chain_is_intact(chain: AuditLog) -> None:
    report = chain.verify()
    assert report.intact, report.problem
    assert report.entries_checked == 6
    assert chain.head()[0] == 6


@pytest.mark.parametrize(
    ("statements", "first_bad", "says"),
    [t[1:] for t in TAMPERING],
    ids=[t[0] for t in TAMPERING],
)
def test_tampering_is_detected_and_located(
    chain: AuditLog, database: Database, statements: list[str], first_bad: int, says: str
) -> None:
    execute(database, *statements)
    report = chain.verify()
    assert not report.intact
    assert report.first_bad_sequence == first_bad
    assert says in report.problem


def test_a_rewritten_and_rehashed_chain_fails_against_its_checkpoint(
    chain: AuditLog, database: Database
) -> None:
    with database.core_transaction() as connection:
        signed_hash = connection.execute(
            sa.text("SELECT entry_hash FROM audit_log WHERE sequence = 4")
        ).scalar_one()
    checkpoint = {4: signed_hash}
    # An attacker with database access rewrites entry 4 and recomputes every hash after it.
    rewritten = entries(6)
    rewritten[3] = AuditEntry(**{**rewritten[3].__dict__, "caller": "nobody"})
    execute(database, "DELETE FROM audit_log", "DELETE FROM audit_head")
    chain.append(rewritten)
    assert chain.verify().intact  # the chain alone cannot tell
    report = chain.verify(checkpoint)
    assert not report.intact
    assert report.first_bad_sequence == 4
    assert "checkpoint" in report.problem


def test_cli_audit_verify_exit_codes(
    chain: AuditLog, database: Database, database_url: str
) -> None:
    import os

    env = {**os.environ, "TONGBAN_DATABASE__URL": database_url}
    intact = subprocess.run(
        [TONGBAN, "audit", "verify"], capture_output=True, text=True, env=env, check=False
    )
    assert intact.returncode == 0, intact.stderr
    assert "intact: 6 entries" in intact.stdout
    execute(database, "DELETE FROM audit_log WHERE sequence = 3")
    broken = subprocess.run(
        [TONGBAN, "audit", "verify"], capture_output=True, text=True, env=env, check=False
    )
    assert broken.returncode == 1
    assert "BROKEN at entry 3" in broken.stdout
