"""Commands that only read create nothing: no store, no folder, no passphrase file.

An audit tool that made the store it checks would report success on nothing; a listing
that wrote a passphrase file would leave secrets where nobody asked for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TONGBAN = str(Path(sys.executable).parent / "tongban")


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tongban ARGS` in `folder` with no configuration file: the defaults' ./data."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_")}
    return subprocess.run(
        [TONGBAN, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environment, "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    "command",
    [("audit", "verify"), ("keys", "list")],
    ids=" ".join,
)
def test_a_read_only_command_without_a_store_refuses_and_creates_nothing(tmp_path, command):
    done = run(tmp_path, *command)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no store at {tmp_path / 'data' / 'tongban.db'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_with_a_store_they_name_it_and_still_create_no_passphrase(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    listed = run(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    verified = run(tmp_path, "audit", "verify")
    assert f"store               {tmp_path / 'data' / 'tongban.db'}" in verified.stdout
    assert "holds no entries" in verified.stdout
    assert verified.returncode == 1
    # Nothing new beside the store (SQLite's own -wal/-shm files aside).
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in made and not str(p).endswith(("-wal", "-shm"))] == []
