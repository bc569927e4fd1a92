"""Signed tree heads, inclusion and consistency proofs through the real hub, checked
with the RFC 9162 reference verifier of the unit tests and with the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from signing import checkpoint, merkle
from signing.keys import PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
from rfc9162_reference import ref_verify_consistency, ref_verify_inclusion

TONGBAN = str(Path(sys.executable).parent / "tongban")
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")


def tongban(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGBAN_DATABASE__URL": settings.database_url}
    return subprocess.run([TONGBAN, *args], capture_output=True, text=True, env=env, check=False)


async def lookups(channel: grpc.aio.Channel, *cases: str) -> None:
    for case in cases:
        await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
            exchange_pb2.LookupRequest(
                subject=PERSON, purpose=common_pb2.Purpose(case_id=case, reason="audit")
            )
        )


async def test_proofs_through_the_hub(start_hub, settings, tmp_path):
    server = await start_hub()
    root_row = server.hub.certificates.keys.root()
    assert root_row is not None
    root = PublicKey.from_jwk(root_row.public_jwk)
    root_file = tmp_path / "root.jwk.json"
    root_file.write_text(json.dumps(root.jwk()))
    address = f"127.0.0.1:{server.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        await lookups(channel, "C-1", "C-2")
        first = (await audit.GetTreeHead(audit_pb2.GetTreeHeadRequest(fresh=True))).tree_head
        head = checkpoint.open_tree_head(first.checkpoint, root, origin="tongban/audit")
        assert head.size == first.size >= 2
        assert head.root == first.root_hash
        saved = tmp_path / "head.txt"
        saved.write_text(first.checkpoint)

        await lookups(channel, "C-3", "C-4", "C-5")
        listed = await audit.ListAccess(audit_pb2.ListAccessRequest(subject=PERSON))
        tree = listed.tree_head
        assert checkpoint.open_tree_head(tree.checkpoint, root).size == tree.size
        cases = [e.purpose.case_id for e in listed.entries]
        assert cases == ["C-1", "C-2", "C-3", "C-4", "C-5"]
        for entry in listed.entries:
            leaf = merkle.SHA256.leaf(entry.leaf_data)
            assert json.loads(entry.leaf_data)["sequence"] == entry.sequence == entry.leaf_index + 1
            assert ref_verify_inclusion(
                entry.leaf_index, tree.size, leaf, list(entry.inclusion_proof), tree.root_hash
            )

        proof = await audit.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first_size=first.size)
        )
        assert proof.second.size == tree.size
        assert ref_verify_consistency(
            first.size, tree.size, first.root_hash, tree.root_hash, list(proof.proof)
        )
        single = await audit.GetInclusionProof(audit_pb2.GetInclusionProofRequest(leaf_index=0))
        assert ref_verify_inclusion(
            0,
            single.tree_head.size,
            single.leaf_hash,
            list(single.proof),
            single.tree_head.root_hash,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first_size=10**9))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "first_size" in (refused.value.details() or "")

    # The CLI, through the hub and through the store.
    remote = await asyncio.to_thread(
        tongban,
        settings,
        "audit",
        "check",
        "--since",
        str(saved),
        "--hub",
        address,
        "--root",
        str(root_file),
    )
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "consistency proof   PASS" in remote.stdout
    proved = await asyncio.to_thread(
        tongban,
        settings,
        "audit",
        "prove",
        "--leaf",
        "1",
        "--hub",
        address,
        "--root",
        str(root_file),
    )
    assert proved.returncode == 0, proved.stdout + proved.stderr
    assert "inclusion proof     PASS: leaf 1" in proved.stdout
    local = tongban(settings, "audit", "check", "--since", str(saved))
    assert local.returncode == 0, local.stdout + local.stderr

    # Someone with database access rewrites an entry and rebuilds the whole tree.
    store = server.hub.audit.store
    entries = [stored.entry for stored in store.entries()]
    with server.hub.database.core_transaction() as connection:
        for table in ("audit_log", "audit_tree_nodes", "audit_tree_head"):
            connection.execute(sa.text(f"DELETE FROM {table}"))
    store.append([replace(entries[0], caller="nobody"), *entries[1:]])
    assert store.verify().intact  # the tree alone cannot tell
    broken = tongban(settings, "audit", "verify")
    assert broken.returncode == 1
    assert "rewritten" in broken.stdout
    async with grpc.aio.insecure_channel(address) as channel:
        await lookups(channel, "C-6")
    server.sign_audit_checkpoint()  # the rebuilt log grows and is signed: a fork
    assert store.latest_tree_head().size == store.head()[0]
    forked = await asyncio.to_thread(
        tongban,
        settings,
        "audit",
        "check",
        "--since",
        str(saved),
        "--hub",
        address,
        "--root",
        str(root_file),
    )
    assert forked.returncode == 1, forked.stdout
    assert "FAIL" in forked.stdout

    with server.hub.database.core_transaction() as connection:
        connection.execute(
            sa.text("UPDATE audit_tree_heads SET note = replace(note, 'time', 'tame')")
        )
    forged = tongban(settings, "audit", "verify")
    assert forged.returncode == 1
    assert "does not verify" in forged.stdout
