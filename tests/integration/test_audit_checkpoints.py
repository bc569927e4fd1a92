"""Signed audit checkpoints: a chain rewritten and re-hashed wholesale is still caught."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import sqlalchemy as sa

from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc

TONGBAN = str(Path(sys.executable).parent / "tongban")
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")


def audit_verify(settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGBAN_DATABASE__URL": settings.database_url}
    return subprocess.run(
        [TONGBAN, "audit", "verify"], capture_output=True, text=True, env=env, check=False
    )


async def test_checkpoints_are_signed_and_catch_a_rewritten_chain(start_hub, settings):
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for case in ("C-1", "C-2"):
            await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
                exchange_pb2.LookupRequest(
                    subject=PERSON, purpose=common_pb2.Purpose(case_id=case, reason="audit")
                )
            )
    store = server.hub.audit.store
    signed = server.sign_audit_checkpoint()
    assert signed == store.head()
    assert server.sign_audit_checkpoint() is None  # nothing new to sign
    intact = audit_verify(settings)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "1 signed checkpoints verified" in intact.stdout

    # Someone with database access rewrites an entry and re-hashes the whole chain.
    entries = [stored.entry for stored in store.entries()]
    with server.hub.database.core_transaction() as connection:
        connection.execute(sa.text("DELETE FROM audit_log"))
        connection.execute(sa.text("DELETE FROM audit_head"))
    store.append([replace(entries[0], caller="nobody"), *entries[1:]])
    assert store.verify().intact  # the chain alone cannot tell
    broken = audit_verify(settings)
    assert broken.returncode == 1
    assert "signed checkpoint" in broken.stdout

    with server.hub.database.core_transaction() as connection:
        connection.execute(sa.text("UPDATE audit_checkpoints SET signature = signature || 'x'"))
    forged = audit_verify(settings)
    assert forged.returncode == 1
    assert "does not verify" in forged.stdout
