"""`tongban serve`, `db upgrade`, `lookup` and `keys check` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from certstore.migrate import head

ROOT = Path(__file__).resolve().parents[2]
TONGBAN = str(Path(sys.executable).parent / "tongban")
EXAMPLE = ROOT / "config" / "tongban.example.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TONGBAN, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def hub_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TONGBAN_DATABASE__URL"] = database_url
    env["TONGBAN_DATA_DIR"] = str(tmp_path)
    env["TONGBAN_HTTP__LISTEN"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def serving(hub_env):
    """A `tongban serve` process on a free port; yields (port, process)."""
    port = free_port()
    process = subprocess.Popen(
        [TONGBAN, "serve", "--config", str(EXAMPLE), "--listen", f"127.0.0.1:{port}"],
        env=hub_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while True:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                break
        except grpc.RpcError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"hub did not start: {process.communicate()}") from None
            time.sleep(0.2)
    yield port, process, channel
    channel.close()
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_serve_answers_health_reflection_and_lookups_then_stops_on_sigterm(serving, hub_env):
    port, process, channel = serving
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    services = {s.name for s in answer.list_services_response.service}
    assert {
        "tongban.v1.ExchangeService",
        "tongban.v1.AuditService",
        "grpc.health.v1.Health",
    } <= services

    looked_up = run(
        "lookup", "ID_CARD", "11010519491231002X", "--case", "C-9", "--reason", "test",
        "--hub", f"127.0.0.1:{port}", "--json",
        env=hub_env,
    )  # fmt: skip
    assert looked_up.returncode == 0, looked_up.stderr
    answer_json = json.loads(looked_up.stdout)
    assert answer_json["records"][0]["recordType"] == "population.resident"

    readable = run(
        "lookup", "uscc", "91350100M000100Y43", "--case", "C-9", "--reason", "test",
        "--hub", f"127.0.0.1:{port}",
        env=hub_env,
    )  # fmt: skip
    assert readable.returncode == 0, readable.stderr
    assert "market.business_license" in readable.stdout
    # Each record shows its own key.
    assert "USCC" in readable.stdout.split("market.business_license", 1)[1]

    company = run(
        "lookup", "uscc", "91350100M000100Y43", "--case", "C-9", "--reason", "test",
        "--hub", f"127.0.0.1:{port}", "--json",
        env=hub_env,
    )  # fmt: skip
    [licence] = json.loads(company.stdout)["records"]
    capital = licence["fields"]["registered_capital_cny"]
    assert type(capital) is int, capital  # not 1000000.0

    # An 80-column pipe cuts no adapter id; --json gives the same as data.
    narrow = {**hub_env, "COLUMNS": "80"}
    listed = run("adapters", "list", "--hub", f"127.0.0.1:{port}", env=narrow)
    assert listed.returncode == 0, listed.stderr
    assert "psb.population" in listed.stdout
    assert "amr.business" in listed.stdout
    status = run("status", "--hub", f"127.0.0.1:{port}", env=narrow)
    assert "psb.population" in status.stdout
    assert "amr.business" in status.stdout
    as_data = json.loads(run("adapters", "list", "--json", "--hub", f"127.0.0.1:{port}").stdout)
    assert {row["id"] for row in as_data} == {"psb.population", "amr.business"}
    assert all("options" not in row for row in as_data)
    report = json.loads(run("status", "--json", "--hub", f"127.0.0.1:{port}", env=hub_env).stdout)
    assert report["serving"] is True
    assert [row["id"] for row in report["adapters"]] == [row["id"] for row in as_data]

    # The resident's access report names the lookups above, with case and reason.
    report_json = run(
        "audit", "access", "ID_CARD", "11010519491231002X", "--json",
        "--hub", f"127.0.0.1:{port}", env=hub_env,
    )  # fmt: skip
    assert report_json.returncode == 0, report_json.stderr
    entries = json.loads(report_json.stdout)["entries"]
    assert [e["purpose"]["caseId"] for e in entries] == ["C-9"]
    assert entries[0]["outcome"] == "LOOKUP OK"
    readable_report = run(
        "audit", "access", "id_card", "11010519491231002X", "--hub", f"127.0.0.1:{port}",
        env={**hub_env, "COLUMNS": "160"},
    )  # fmt: skip
    assert "access report for ID_CARD" in readable_report.stdout
    assert "C-9" in readable_report.stdout

    # Many subjects in one call: a bad key is its own row, the others are answered.
    subjects = hub_env["TONGBAN_DATA_DIR"] + "/subjects.txt"
    Path(subjects).write_text(
        "# hall batch\nID_CARD 11010519491231002X\nUSCC 91350100M000100Y43\nID_CARD 123\n"
    )
    batch = run(
        "lookup-batch", subjects, "--case", "C-9", "--reason", "test", "--json",
        "--hub", f"127.0.0.1:{port}", env=hub_env,
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    answers = sorted(
        (json.loads(line) for line in batch.stdout.splitlines()), key=lambda a: a.get("index", 0)
    )
    assert [("result" in a, "error" in a) for a in answers] == [
        (True, False), (True, False), (False, True)
    ]  # fmt: skip
    assert answers[2]["error"]["code"] == "INVALID_ARGUMENT"

    nobody = run(
        "lookup", "REAL_ESTATE_UNIT", "320102001001GB00001F00010001", "--case", "C-9",
        "--reason", "test", "--hub", f"127.0.0.1:{port}",
        env=hub_env,
    )  # fmt: skip
    assert nobody.returncode == 1
    assert "no source serves REAL_ESTATE_UNIT keys" in nobody.stderr

    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "hub serving" in events
    assert events[-1] == "hub stopped"
    assert "dev mode" in err


def test_lookup_against_a_refusing_hub_is_one_line(hub_env):
    result = run(
        "lookup", "ID_CARD", "11010519491231002X", "--case", "C", "--reason", "r",
        "--hub", f"127.0.0.1:{free_port()}", "--deadline", "1",
        env=hub_env,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("tongban: UNAVAILABLE") or "DEADLINE_EXCEEDED" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_the_schema(hub_env):
    result = run("db", "upgrade", env=hub_env)
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("TONGBAN_SERVER__LISTEN", "nowhere", "server.listen"),
        ("TONGBAN_LOGGING__LEVEL", "LOUD", "logging.level"),
    ],
)
def test_bad_configuration_stops_the_start_with_one_line(hub_env, variable, value, setting):
    hub_env[variable] = value
    result = run("serve", env=hub_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tongban: configuration error: {setting}")


@pytest.mark.parametrize("taken", ["server.listen", "http.listen"])
def test_a_port_already_taken_stops_the_start_with_one_line(hub_env, taken):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = f"127.0.0.1:{holder.getsockname()[1]}"
        listen = busy if taken == "server.listen" else f"127.0.0.1:{free_port()}"
        if taken == "http.listen":
            hub_env["TONGBAN_HTTP__LISTEN"] = busy
        result = run("serve", "--config", str(EXAMPLE), "--listen", listen, env=hub_env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tongban: configuration error: {taken}: cannot listen on {busy}")
    assert "Traceback" not in result.stderr
    assert "never awaited" not in result.stderr


def test_a_hub_that_may_not_migrate_says_to_run_db_upgrade(hub_env):
    hub_env["TONGBAN_DATABASE__MIGRATE_ON_START"] = "false"
    result = run(
        "serve", "--config", str(EXAMPLE), "--listen", f"127.0.0.1:{free_port()}", env=hub_env
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"tongban: the database has no Tongban schema, this release needs {head()}: run "
        "`tongban db upgrade` (database.migrate_on_start is off)"
    )


def test_missing_config_file_is_one_line(hub_env, tmp_path):
    result = run("serve", "--config", str(tmp_path / "nope.toml"), env=hub_env)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"tongban: configuration error: --config: no such file: {tmp_path / 'nope.toml'}"
    )


@pytest.mark.parametrize(
    ("args", "code", "out"),
    [
        (("ID_CARD", "１１０１０５１９４９１２３１００２ｘ"), 0, "11010519491231002X"),
        (("id_card", "110105491231002"), 0, "11010519491231002X"),
        (("USCC", "91350100M000100Y43"), 0, "91350100M000100Y43"),
        (("ORG_CODE", "M000100Y4"), 0, "M000100Y-4"),
        (("ID_CARD", "110105194912310021"), 1, "check character"),
        (("USCC", "91350100M000100Y4I"), 1, "not allowed"),
    ],
)
def test_keys_check(args, code, out):
    result = run("keys", "check", *args)
    assert result.returncode == code
    assert out in (result.stdout if code == 0 else result.stderr)
