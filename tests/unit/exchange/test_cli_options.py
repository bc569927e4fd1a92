"""Command-line options checked before anything is called: one line naming the flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.errors import ConfigError
from exchange.cli.client import DEFAULT_HUB_PORT, hub_target

TONGBAN = str(Path(sys.executable).parent / "tongban")


@pytest.mark.parametrize(
    ("given", "dialed"),
    [
        ("127.0.0.1", f"127.0.0.1:{DEFAULT_HUB_PORT}"),
        ("localhost", f"localhost:{DEFAULT_HUB_PORT}"),
        ("127.0.0.1:6000", "127.0.0.1:6000"),
        ("[::1]", f"[::1]:{DEFAULT_HUB_PORT}"),
        ("::1", f"[::1]:{DEFAULT_HUB_PORT}"),
        ("[::1]:7000", "[::1]:7000"),
    ],
)
def test_a_hub_without_a_port_is_dialed_on_the_hubs_default_port(given, dialed):
    assert hub_target(given) == dialed


@pytest.mark.parametrize("given", ["", "h:abc", "h:0", "h:70000", ":80"])
def test_a_bad_hub_address_names_the_flag(given):
    with pytest.raises(ConfigError, match="--hub"):
        hub_target(given)


def tongban(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TONGBAN, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.parametrize("deadline", ["-1", "0"])
def test_a_deadline_that_is_no_time_names_the_flag(deadline):
    done = tongban(
        "lookup", "id_card", "11010519491231002X", "--case", "C", "--reason", "r",
        "--deadline", deadline, "--hub", "127.0.0.1:1",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--deadline: must be more than 0" in done.stderr
    assert "DEADLINE_EXCEEDED" not in done.stderr


def test_flags_show_no_value_placeholder_in_help():
    done = tongban("lookup", "--help")
    assert done.returncode == 0
    assert "--json" in done.stdout
    assert "<bool>" not in done.stdout
    assert "<float>" in done.stdout  # options that take a value still say what kind
