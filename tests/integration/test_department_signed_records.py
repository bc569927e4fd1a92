"""Department-signed records end to end: verified on arrival, passed through, kept for
stale serving, bound by the receipt, and checked offline with the exported trust folder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf import duration_pb2, json_format

from adapters.base import AdapterSpec
from adapters.factory import build_from_spec
from adapters.resilience import RetryPolicy
from domain.subjects import KeyKind
from exchange.generated import (
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from signing.trust import TrustedKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets" / "adapters"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from grpc_department import signing_key
from test_grpc_adapter import start_department

TONGBAN = str(Path(sys.executable).parent / "tongban")
SEED = "22" * 32
PSB = "11110000000013338W"
WANG = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
LI = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="510107199901013337")


def receipt_verify(receipt: Path, answer: Path, trust: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TONGBAN, "receipt", "verify", str(receipt), "--answer", str(answer),
         "--bundle", str(trust)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def signed_adapter(target: str):  # type: ignore[no-untyped-def]
    key = TrustedKey(
        public_key=signing_key(SEED).public_key(),
        issuer_department="市公安局",
        issuer_uscc=PSB,
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return build_from_spec(
        AdapterSpec(
            adapter_id="psb.signed",
            kind="grpc",
            department="市公安局",
            department_uscc=PSB,
            serves={"population.resident": frozenset({KeyKind.ID_CARD})},
            options={"target": target},
            timeout=2.0,
            retry=RetryPolicy(attempts=1),
            failure_threshold=100,
            department_keys=(key,),
        )
    )


async def lookup(channel, subject, case: str, staleness: int = 0) -> exchange_pb2.LookupResponse:  # type: ignore[no-untyped-def]
    return await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
        exchange_pb2.LookupRequest(
            subject=subject,
            purpose=common_pb2.Purpose(case_id=case, reason="signed"),
            max_staleness=duration_pb2.Duration(seconds=staleness),
        )
    )


async def test_department_signatures_flow_end_to_end(start_hub, settings, tmp_path):
    department = start_department("--sign-seed", SEED, "--forge", "R1")
    try:
        server = await start_hub([signed_adapter(department.target)])
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            fresh = await lookup(channel, LI, "S-1")
            [record] = [r for r in fresh.records if r.provenance.adapter_id == "psb.signed"]
            signature = record.provenance.department_signature
            assert signature.count(".") == 2
            forged = await lookup(channel, WANG, "S-2")
            assert not forged.records
            reasons = {r.source_record_id: r.reason for r in forged.rejected}
            assert "other content than the record sent" in reasons["R1"]
            receipt_claims = await verification_pb2_grpc.VerificationServiceStub(
                channel
            ).VerifyReceipt(
                verification_pb2.VerifyReceiptRequest(receipt=fresh.receipt, answer=fresh)
            )
            assert receipt_claims.valid, receipt_claims.checks
            assert "department_signature" in json.loads(receipt_claims.claims_json)["records"][0]
            trust = tmp_path / "trust"
            exported = await asyncio.to_thread(
                subprocess.run,
                [TONGBAN, "trust", "export", "--out", str(trust), "--hub", address],
                capture_output=True, text=True, check=False,
                env={**os.environ, "TONGBAN_DATABASE__URL": settings.database_url},
            )  # fmt: skip
            assert exported.returncode == 0, exported.stderr
            assert (trust / "department-keys.jws").exists()

            department.kill()  # the department goes away: the stored copy keeps its signature
            stale = await lookup(channel, LI, "S-3", staleness=3600)
            [kept] = [r for r in stale.records if r.provenance.adapter_id == "psb.signed"]
            assert kept.stale
            assert kept.provenance.department_signature == signature
    finally:
        department.kill()

    answer_file, receipt_file = tmp_path / "answer.json", tmp_path / "receipt.jws"
    answer_file.write_text(json_format.MessageToJson(stale, ensure_ascii=False))
    receipt_file.write_text(stale.receipt)
    checked = receipt_verify(receipt_file, answer_file, trust)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "department signature psb.signed/R5" in checked.stdout
    assert "RECEIPT VALID" in checked.stdout
    edited = json.loads(answer_file.read_text())
    for item in edited["records"]:
        if item["provenance"]["adapterId"] == "psb.signed":
            item["fields"]["name"] = "someone else"
    answer_file.write_text(json.dumps(edited, ensure_ascii=False))
    caught = receipt_verify(receipt_file, answer_file, trust)
    assert caught.returncode == 1
    assert "other content than the record sent" in caught.stdout
