"""Recording accesses and actions in the audit trail, and answering who looked.

Subjects are kept in the trail as a keyed digest (HMAC-SHA256 with the hub's audit
key) plus a masked form, so the trail can answer "who accessed this person's data"
without holding anyone's identifier in clear.

Accesses are written with group commit: concurrent lookups wait for one shared
transaction, and none answers before its entry is committed. When the trail cannot
be written, the access fails: there is no access without its audit entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from certstore.audit import AuditEntry, AuditLog
from domain.errors import StoreError, TongbanError
from domain.records import canonical_json
from domain.subjects import SubjectKey
from exchange.auth.policy import Caller
from signing.jws import sign_compact, verify_compact
from signing.keys import PublicKey, SigningKey

log = structlog.get_logger("tongban.audit")

MAX_ENTRIES_PER_TRANSACTION = 500

_Pending = tuple[AuditEntry, "asyncio.Future[None]"]


class AuditTrail:
    """Builds audit entries and commits them, many per transaction."""

    def __init__(self, log_store: AuditLog, subject_key: bytes) -> None:
        self.store = log_store
        self._subject_key = subject_key
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    def subject_digest(self, subject: SubjectKey) -> str:
        message = f"{subject.kind.value}:{subject.value}".encode()
        return hmac.new(self._subject_key, message, hashlib.sha256).hexdigest()

    def entry(
        self,
        caller: Caller,
        action: str,
        outcome: str,
        subject: SubjectKey | None = None,
        **detail: Any,
    ) -> AuditEntry:
        return AuditEntry(
            at=datetime.now(UTC),
            caller=str(caller),
            action=action,
            outcome=outcome,
            subject_digest=self.subject_digest(subject) if subject else None,
            subject_masked=subject.masked() if subject else None,
            detail=detail,
        )

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._commit_forever(self._queue))

    async def record(self, entry: AuditEntry) -> None:
        """Commit `entry`; returns once it is durable. Raises `StoreError` if it is not."""
        if self._queue is None:
            await asyncio.to_thread(self.store.append, [entry])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, done))
        await done

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._queue = self._task = None

    async def _commit_forever(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            pending = [await queue.get()]
            while len(pending) < MAX_ENTRIES_PER_TRANSACTION and not queue.empty():
                pending.append(queue.get_nowait())
            try:
                await asyncio.to_thread(self.store.append, [entry for entry, _ in pending])
            except Exception as exc:  # every waiter must hear of any failure, and the loop live on
                reason = exc.message if isinstance(exc, TongbanError) else repr(exc)
                failure = StoreError(f"the audit trail cannot be written: {reason}")
                for _, done in pending:
                    if not done.done():
                        done.set_exception(failure)
                with contextlib.suppress(Exception):  # a broken log sink must not stop audits
                    log.error("audit trail not written", entries=len(pending), error=reason)
            else:
                for _, done in pending:
                    if not done.done():
                        done.set_result(None)
            finally:
                for _ in pending:
                    queue.task_done()


def lookup_detail(
    record_types: list[str],
    fields_returned: Mapping[str, list[str]],
    case_id: str,
    reason: str,
    sources: Mapping[str, str],
    request_id: str,
) -> dict[str, Any]:
    """The detail of a LOOKUP entry, in the shape `AuditService.ListAccess` reads."""
    return {
        "record_types": record_types,
        "fields_returned": {k: sorted(v) for k, v in fields_returned.items()},
        "purpose": {"case_id": case_id, "reason": reason},
        "sources": dict(sources),
        "request_id": request_id,
    }


TYP_AUDIT_CHECKPOINT = "tongban-audit-checkpoint+jws"


def sign_checkpoint(
    store: AuditLog, key: SigningKey, now: datetime | None = None
) -> tuple[int, str] | None:
    """Sign the chain's head with `key` (the hub's root key) and store the checkpoint.

    Returns (sequence, hash) signed, or None when the chain is empty or its head is
    signed already. Raises `StoreError`.
    """
    sequence, digest = store.head()
    signed = store.checkpoints()
    if sequence == 0 or (signed and signed[-1][0] >= sequence):
        return None
    moment = now or datetime.now(UTC)
    claims = {"sequence": sequence, "entry_hash": digest, "signed_at": moment.isoformat()}
    token = sign_compact(canonical_json(claims), key, typ=TYP_AUDIT_CHECKPOINT)
    store.add_checkpoint(sequence, digest, moment, token)
    return sequence, digest


def verified_checkpoints(store: AuditLog, root: PublicKey) -> tuple[dict[int, str], str | None]:
    """The checkpoints whose signature verifies under `root`, and the first problem.

    A checkpoint whose signature does not verify, or whose signed content differs from
    its row, is a problem: someone edited the checkpoints themselves.
    """
    good: dict[int, str] = {}
    for sequence, digest, token in store.checkpoints():
        try:
            claims = json.loads(verify_compact(token, root, typ=TYP_AUDIT_CHECKPOINT).payload)
        except (TongbanError, ValueError):
            return good, f"the signed checkpoint at entry {sequence} does not verify"
        if claims.get("sequence") != sequence or claims.get("entry_hash") != digest:
            return good, f"the checkpoint at entry {sequence} differs from what was signed"
        good[sequence] = digest
    return good, None
