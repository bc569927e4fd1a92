"""Schemathesis (a stock OpenAPI fuzzer) against a running hub's /api/v1/openapi.json.

In dev mode (plain HTTP) and in production mode (HTTPS, client certificate from the test
CA), every generated request must get no 5xx, and every answer must conform to the
document: its status codes, content types and JSON schemas. Each run is bounded in
examples and time so CI stays quick; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
SCHEMATHESIS = Path(sys.executable).with_name("st")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)
MAX_EXAMPLES = "5"
# Each run stops generating after this long (it still reports what it found).
MAX_SECONDS = "75"
# Its request body is NDJSON, which schemathesis cannot generate.
EXCLUDED = ("--exclude-operation-id", "VerificationService.VerifyStream")

pytestmark = pytest.mark.slow


async def _fuzz(url: str, workdir: Path, *extra: str) -> str:
    if not SCHEMATHESIS.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        url,
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--max-time",
        MAX_SECONDS,
        "--phases",
        "examples,fuzzing",
        "--seed",
        "20261203",
        "--request-timeout",
        "20",
        "--no-color",
        "--workers",
        "1",
        *EXCLUDED,
        *extra,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "passed" in text
    assert "5xx" not in text.split("SUMMARY", 1)[-1]
    return text


async def test_fuzz_dev_mode(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        EXAMPLE, data_dir=str(tmp_path / "data"), **{"database.url": database_url}
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0", "127.0.0.1:0")
    await server.start()
    try:
        await _fuzz(f"http://127.0.0.1:{server.web.port}/api/v1/openapi.json", tmp_path)
    finally:
        await server.stop(grace=0.5)


async def test_fuzz_production_mode_with_a_client_certificate(
    secure_settings: Settings, pki: Any, tmp_path: Path
) -> None:
    server = HubServer(Hub.open(secure_settings), "127.0.0.1:0", api_listen="127.0.0.1:0")
    await server.start()
    hall = pki.clients["hall"]
    try:
        await _fuzz(
            f"https://localhost:{server.api_port}/api/v1/openapi.json",
            tmp_path,
            "--tls-verify",
            str(pki.folder / "ca.crt"),
            "--request-cert",
            str(hall.certificate),
            "--request-cert-key",
            str(hall.private_key),
        )
    finally:
        await server.stop(grace=0.5)
