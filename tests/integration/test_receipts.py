"""Receipts on Lookup answers: stock JOSE libraries verify them, `tongban receipt verify`
checks them offline against the answer, and every tamper is named."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import json_format
from jwcrypto import jwk, jws

from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from signing import merkle
from signing.keys import PublicKey
from signing.receipt import answer_from_json, verify_receipt

TONGBAN = str(Path(sys.executable).parent / "tongban")
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
COMPANY = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value="91320100MA1FL8XQ1A")


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


async def _lookup(channel, subject, case: str) -> exchange_pb2.LookupResponse:
    return await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
        exchange_pb2.LookupRequest(
            subject=subject, purpose=common_pb2.Purpose(case_id=case, reason="receipts")
        )
    )


def _tamper_field(answer: dict[str, Any]) -> None:
    answer["records"][0]["fields"]["name"] = "someone else"


def _drop_record(answer: dict[str, Any]) -> None:
    answer["records"].pop(0)


TAMPERS = [
    ("tampered record", _tamper_field, "its fields were changed"),
    ("dropped record", _drop_record, "missing from the answer (dropped)"),
    ("record from another answer", None, "not covered by this receipt"),
    ("another subject", lambda a: a["subject"].update(value="110101199003070011"), "subject"),
    (
        "another outcome",
        lambda a: a["sources"][0].update(outcome="SOURCE_OUTCOME_ERROR"),
        "sources differ",
    ),
]


async def test_receipts_verify_and_every_tamper_is_named(start_hub, settings, tmp_path):
    server = await start_hub()
    root_row = server.hub.certificates.keys.root()
    root = PublicKey.from_jwk(root_row.public_jwk)
    address = f"127.0.0.1:{server.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await _lookup(channel, PERSON, "R-1")
        other = await _lookup(channel, COMPANY, "R-2")
        assert answer.records
        assert answer.receipt
        assert other.receipt

        # Stock libraries: PyJWT and jwcrypto verify the EdDSA signature with the root JWK.
        claims = jwt.decode(answer.receipt, key=jwt.PyJWK(root.jwk()).key, algorithms=["EdDSA"])
        assert claims["purpose"] == {"case_id": "R-1", "reason": "receipts"}
        assert claims["subject"]["masked"] == "110105********002X"
        token = jws.JWS()
        token.deserialize(answer.receipt)
        token.verify(jwk.JWK(**root.jwk()))
        assert json.loads(token.payload)["request_id"] == answer.request_id
        header = json.loads(_b64(answer.receipt.split(".")[0]))
        assert header == {"alg": "EdDSA", "kid": root.kid, "typ": "tongban-receipt+jws"}
        assert len(claims["records"]) == len(answer.records)
        record_claim = claims["records"][0]
        assert record_claim["content_hash"] == answer.records[0].provenance.content_hash

        # Every BatchLookup item carries its own receipt for its own answer.
        batch = exchange_pb2_grpc.ExchangeServiceStub(channel).BatchLookup(
            exchange_pb2.BatchLookupRequest(
                subjects=[PERSON, COMPANY],
                purpose=common_pb2.Purpose(case_id="R-B", reason="receipts"),
            )
        )
        items = [item async for item in batch]
        assert len(items) == 2
        for item in items:
            view = answer_from_json(json_format.MessageToDict(item.result))
            verdict = verify_receipt(item.result.receipt, root, view)
            assert verdict.valid, verdict.problems()

        # The receipt's audit leaf is in the log under a signed tree head.
        proof = await audit_pb2_grpc.AuditServiceStub(channel).GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(leaf_index=claims["audit"]["leaf_index"])
        )
        assert proof.leaf_hash.hex() == claims["audit"]["leaf_hash"]
        merkle.verify_inclusion(
            merkle.SHA256,
            claims["audit"]["leaf_index"],
            proof.tree_head.size,
            proof.leaf_hash,
            list(proof.proof),
            proof.tree_head.root_hash,
        )

    as_json = json_format.MessageToDict(answer)
    verdict = verify_receipt(answer.receipt, root, answer_from_json(as_json))
    assert verdict.valid, verdict.problems()
    for name, tamper, says in TAMPERS:
        changed = copy.deepcopy(as_json)
        if tamper is None:
            changed["records"].append(json_format.MessageToDict(other)["records"][0])
        else:
            tamper(changed)
        verdict = verify_receipt(answer.receipt, root, answer_from_json(changed))
        assert not verdict.valid, name
        assert any(says in problem for problem in verdict.problems()), (name, verdict.problems())
    assert not verify_receipt(other.receipt, root, answer_from_json(as_json)).valid
    forged = answer.receipt[:-4] + ("AAAA" if not answer.receipt.endswith("AAAA") else "BBBB")
    assert verify_receipt(forged, root).problems()[0].startswith("signature")

    # The CLI: lookup saves receipt and answer; receipt verify checks them offline.
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "root.jwk.json").write_text(json.dumps(root.jwk()))
    env = {**os.environ, "TONGBAN_DATABASE__URL": settings.database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TONGBAN, *args], capture_output=True, text=True, env=env, check=False
        )

    receipt_file, answer_file = tmp_path / "receipt.jws", tmp_path / "answer.json"
    looked = await asyncio.to_thread(
        run, "lookup", "ID_CARD", PERSON.value, "--case", "R-3", "--reason", "receipts",
        "--hub", address, "--receipt", str(receipt_file), "--answer", str(answer_file),
    )  # fmt: skip
    assert looked.returncode == 0, looked.stdout + looked.stderr
    checked = run(
        "receipt", "verify", str(receipt_file), "--answer", str(answer_file), "--bundle", str(trust)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "signature" in checked.stdout
    assert "RECEIPT VALID" in checked.stdout
    changed = json.loads(answer_file.read_text())
    _tamper_field(changed)
    answer_file.write_text(json.dumps(changed, ensure_ascii=False))
    caught = run(
        "receipt", "verify", str(receipt_file), "--answer", str(answer_file), "--bundle", str(trust)
    )
    assert caught.returncode == 1
    assert "its fields were changed" in caught.stdout
    proved = await asyncio.to_thread(
        run,
        "audit",
        "prove",
        "--receipt",
        str(receipt_file),
        "--hub",
        address,
        "--bundle",
        str(trust),
    )
    assert proved.returncode == 0, proved.stdout + proved.stderr
    assert "receipt leaf        PASS" in proved.stdout


@pytest.mark.parametrize("receipts", [False])
async def test_receipts_can_be_switched_off_for_the_benchmark(start_hub, settings, receipts):
    from exchange.hub import Hub
    from exchange.server import HubServer

    hub = Hub.open(
        settings.model_copy(
            update={"audit": settings.audit.model_copy(update={"receipts": receipts})}
        )
    )
    server = HubServer(hub, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await _lookup(channel, PERSON, "R-9")
        assert answer.receipt == ""
    finally:
        await server.stop(grace=0.5)
