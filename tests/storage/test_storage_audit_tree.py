"""The Merkle audit log detects and locates tampering done directly in SQL, and the CLI
catches shortened logs against signed and saved tree heads (issue 16 §2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from certstore.audit import AuditEntry, AuditLog, leaf_data
from certstore.database import Database
from exchange.audit import sign_tree_head, verified_tree_heads
from signing import generate, merkle
from signing.keys import SoftwareSigningKey

TONGBAN = str(Path(sys.executable).parent / "tongban")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def entries(count: int, first: int = 1) -> list[AuditEntry]:
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
        for n in range(first, first + count)
    ]


# The international suite's SHA-256 tree and the GM suite's SM3 tree.
@pytest.fixture(params=["sha256", "sm3"])
def tree(database: Database, request: pytest.FixtureRequest) -> AuditLog:
    log = AuditLog(database, hash_name=request.param)
    log.append(entries(4))
    log.append(entries(2, 5))  # two appends: the tree continues across transactions
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
        "edited",
    ),
    (
        "edit the outcome",
        ["UPDATE audit_log SET outcome = 'DENIED' WHERE sequence = 5"],
        5,
        "edited",
    ),
    (
        "edit the purpose in the JSON detail",
        ["""UPDATE audit_log SET detail = '{"purpose": {"case_id": "C-9"}}' WHERE sequence = 4"""],
        4,
        "edited",
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
        "edited (or moved)",
    ),
    (
        "edit an entry and its leaf",
        [
            "UPDATE audit_log SET caller = 'x' WHERE sequence = 2",
            "UPDATE audit_tree_nodes SET hash = 'ff' WHERE level = 0 AND idx = 1",
        ],
        2,
        "edited",
    ),
]


def test_a_tree_keeps_the_hash_it_was_made_with(database: Database) -> None:
    """A store that switches to the GM suite keeps its SHA-256 tree (history is not
    rewritten); a tree made under the GM suite is SM3, GB/T 32905 for every node."""
    AuditLog(database).append(entries(2))
    switched = AuditLog(database, hash_name="sm3")
    switched.append(entries(1, 3))
    assert switched.state().hash_name == "sha256"
    assert switched.verify().intact


def test_the_sm3_tree_hashes_with_sm3() -> None:
    from domain.crypto import HashAlg

    hasher = merkle.tree_hasher("sm3")
    assert hasher.leaf(b"abc") == HashAlg.SM3.digest(b"\x00abc")
    assert hasher.node(b"l", b"r") == HashAlg.SM3.digest(b"\x01lr")
    assert hasher.digest_size == 32


def test_an_untouched_tree_is_intact(tree: AuditLog) -> None:
    report = tree.verify()
    assert report.intact, report.problem
    assert report.entries_checked == 6
    size, root = tree.head()
    assert size == 6
    hasher = merkle.tree_hasher(tree.state().hash_name)  # SHA-256, or SM3 (GM suite)
    leaves = [hasher.leaf(leaf_data(n, e)) for n, e in enumerate(entries(6), 1)]
    assert bytes.fromhex(root) == merkle.fold(
        hasher,
        [
            hasher.node(hasher.node(leaves[0], leaves[1]), hasher.node(leaves[2], leaves[3])),
            hasher.node(leaves[4], leaves[5]),
        ],
    )
    assert tree.root_at(6).hex() == root


@pytest.mark.parametrize(
    ("statements", "first_bad", "says"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_tampering_is_detected_and_located(
    tree: AuditLog, database: Database, statements: list[str], first_bad: int, says: str
) -> None:
    execute(database, *statements)
    report = tree.verify()
    assert not report.intact
    assert report.first_bad_sequence == first_bad
    assert says in report.problem


def test_a_rebuilt_tree_fails_against_its_signed_head(tree: AuditLog, database: Database) -> None:
    key = generate()
    signed = sign_tree_head(tree, key)
    assert signed is not None
    assert signed.size == 6
    assert sign_tree_head(tree, key) is None  # nothing new to sign
    # An attacker with database access rewrites entry 4 and rebuilds the whole tree.
    rewritten = entries(6)
    rewritten[3] = replace(rewritten[3], caller="nobody")
    execute(
        database,
        "DELETE FROM audit_log",
        "DELETE FROM audit_tree_nodes",
        "DELETE FROM audit_tree_head",
    )
    tree.append(rewritten)
    assert tree.verify().intact  # the tree alone cannot tell
    heads, problem = verified_tree_heads(tree, key.public_key())
    assert problem is None
    report = tree.verify(heads)
    assert not report.intact
    assert "rewritten" in report.problem


def write_root(tmp_path: Path, key: SoftwareSigningKey) -> Path:
    path = tmp_path / "root.jwk.json"
    path.write_text(json.dumps(key.public_jwk()))
    return path


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGBAN_DATABASE__URL": database_url}
    return subprocess.run(
        [TONGBAN, "audit", *args], capture_output=True, text=True, env=env, check=False
    )


def test_cli_catches_a_shortened_log(database: Database, database_url: str, tmp_path: Path) -> None:
    """Issue 16 §2, replayed on the tree: 182 entries with signed heads along the way."""
    key = generate()
    root = write_root(tmp_path, key)
    log = AuditLog(database)
    everything = entries(182)
    for start in range(0, 182, 20):
        log.append(everything[start : start + 20])
        sign_tree_head(log, key)
    saved = tmp_path / "head-182.txt"
    saved.write_text(log.latest_tree_head().note)  # type: ignore[union-attr]
    intact = cli(database_url, "verify", "--root", str(root))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "PASS: 182 entries" in intact.stdout
    assert "10 verify" in intact.stdout

    # Delete the newest 5 and make the tree itself consistent again at 177.
    execute(
        database,
        "DELETE FROM audit_log",
        "DELETE FROM audit_tree_nodes",
        "DELETE FROM audit_tree_head",
    )
    log.append(everything[:177])
    shortened = cli(database_url, "verify", "--root", str(root))
    assert shortened.returncode == 1
    assert "holds 177 entries but a signed tree head has 182" in shortened.stdout

    # The later signed heads deleted too: only a head saved outside the store can tell.
    execute(database, "DELETE FROM audit_tree_heads WHERE size > 177")
    assert cli(database_url, "verify", "--root", str(root)).returncode == 0
    for command in (["verify", "--head", str(saved)], ["check", "--since", str(saved)]):
        caught = cli(database_url, *command, "--root", str(root))
        assert caught.returncode == 1, caught.stdout
        assert "holds 177 entries but a signed tree head has 182" in caught.stdout

    # Every entry, head and tree row deleted: nothing verified is no success.
    execute(database, "DELETE FROM audit_log", "DELETE FROM audit_tree_nodes",
            "DELETE FROM audit_tree_head", "DELETE FROM audit_tree_heads")  # fmt: skip
    empty = cli(database_url, "verify", "--root", str(root))
    assert empty.returncode == 1
    assert "holds no entries" in empty.stdout
    assert cli(database_url, "check", "--since", str(saved), "--root", str(root)).returncode == 1


CHECK_TAMPERING = [
    ("edit", "UPDATE audit_log SET outcome = 'DENIED' WHERE sequence = 7", "entry 7"),
    ("delete", "DELETE FROM audit_log WHERE sequence = 3", "entry 3 is missing"),
    (
        "reorder",
        "UPDATE audit_log SET detail = (SELECT detail FROM audit_log WHERE sequence = 9) "
        "WHERE sequence = 8",
        "entry 8",
    ),
    ("truncate the newest", "DELETE FROM audit_log WHERE sequence >= 11", "deleted"),
]


@pytest.mark.parametrize(
    ("statement", "says"), [t[1:] for t in CHECK_TAMPERING], ids=[t[0] for t in CHECK_TAMPERING]
)
def test_audit_check_since_an_earlier_head(
    database: Database, database_url: str, tmp_path: Path, statement: str, says: str
) -> None:
    key = generate()
    root = write_root(tmp_path, key)
    log = AuditLog(database)
    log.append(entries(12))
    saved = tmp_path / "head.txt"
    saved.write_text(sign_tree_head(log, key).note)  # type: ignore[union-attr]
    log.append(entries(5, 13))
    sign_tree_head(log, key)
    good = cli(database_url, "check", "--since", str(saved), "--root", str(root))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "consistency proof   PASS: the signed head of size 17 extends it" in good.stdout
    execute(database, statement)
    bad = cli(database_url, "check", "--since", str(saved), "--root", str(root))
    assert bad.returncode == 1, bad.stdout
    assert says in bad.stdout
