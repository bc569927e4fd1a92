"""SIGKILL during a burst of lookups: after the restart every receipt a caller got names
a leaf the log holds (its inclusion proof verifies under the new signed tree head), and
that head is consistent with the last one published before the kill."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from signing import checkpoint
from signing.keys import PublicKey
from signing.receipt import open_receipt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "certificates"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
from rfc9162_reference import ref_verify_consistency, ref_verify_inclusion
from test_cert_crash import ServeProcess

WORKERS = 6
RECEIPTS_BEFORE_KILL = 40
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")


@pytest.fixture
def serve_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TONGBAN_DATABASE__URL": database_url,
        "TONGBAN_DATA_DIR": str(tmp_path / "data"),
        "TONGBAN_HTTP__LISTEN": "",
        "TONGBAN_LOGGING__LEVEL": "WARNING",
    }


def _root(channel: grpc.Channel) -> PublicKey:
    answer = verification_pb2_grpc.VerificationServiceStub(channel).GetTrustBundle(
        verification_pb2.GetTrustBundleRequest()
    )
    return PublicKey.from_jwk(json.loads(answer.root_public_jwk))


def test_sigkill_during_lookups_keeps_every_receipt_provable(serve_env: dict[str, str]) -> None:
    hub = ServeProcess(serve_env)
    root = _root(hub.channel)
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub.channel)
    audit = audit_pb2_grpc.AuditServiceStub(hub.channel)
    receipts: list[str] = []
    heads: list[audit_pb2.SignedTreeHead] = []
    lock = threading.Lock()
    enough = threading.Event()

    def look_up_until_the_hub_dies(worker: int) -> None:
        for number in range(10_000):
            request = exchange_pb2.LookupRequest(
                subject=PERSON,
                purpose=common_pb2.Purpose(case_id=f"K-{worker}-{number}", reason="crash"),
            )
            try:
                answer = stub.Lookup(request, timeout=10)
                if worker == 0 and number % 5 == 0:  # tree heads published during the burst
                    head = audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(fresh=True), timeout=10)
                    with lock:
                        heads.append(head.tree_head)
            except grpc.RpcError:
                return  # the hub is gone
            with lock:
                receipts.append(answer.receipt)
                if len(receipts) >= RECEIPTS_BEFORE_KILL and heads:
                    enough.set()

    with ThreadPoolExecutor(WORKERS) as pool:
        for worker in range(WORKERS):
            pool.submit(look_up_until_the_hub_dies, worker)
        assert enough.wait(90), "the burst never got going"
        hub.kill()  # mid-burst

    last_before = max(heads, key=lambda h: h.size)
    restarted = ServeProcess(serve_env)
    try:
        audit = audit_pb2_grpc.AuditServiceStub(restarted.channel)
        after = audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(fresh=True)).tree_head
        head = checkpoint.open_tree_head(after.checkpoint, root)
        assert head.size >= last_before.size
        consistency = audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(
                first_size=last_before.size, second_size=after.size
            )
        )
        assert ref_verify_consistency(
            last_before.size, after.size, last_before.root_hash, after.root_hash,
            list(consistency.proof),
        )  # fmt: skip
        assert receipts
        for receipt in receipts:
            position = open_receipt(receipt, root)["audit"]
            proof = audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(
                    leaf_index=position["leaf_index"], tree_size=after.size
                )
            )
            assert proof.leaf_hash.hex() == position["leaf_hash"]
            assert ref_verify_inclusion(
                position["leaf_index"], after.size, proof.leaf_hash, list(proof.proof),
                after.root_hash,
            )  # fmt: skip
        assert base64.b64decode(after.checkpoint.splitlines()[2]) == after.root_hash
    finally:
        restarted.stop()
