"""Recording accesses and actions in the audit trail, and answering who looked.

Subjects are kept in the trail as a keyed digest (HMAC-SHA256 with the hub's audit
key) plus a masked form, so the trail can answer "who accessed this person's data"
without holding anyone's identifier in clear.

Accesses are written with group commit: concurrent lookups wait for one shared
transaction, and none answers before its entry is committed. When the trail cannot
be written, the access fails: there is no access without its audit entry. A group the
database refuses is retried entry by entry, so one bad entry fails only its own call.

The tree is published as signed tree heads (C2SP checkpoints) by the hub's root key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from certstore.audit import AuditEntry, AuditLog, StoredAuditEntry, StoredTreeHead
from domain.errors import StoreError, TongbanError
from domain.subjects import SubjectKey
from exchange.auth.policy import Caller
from signing import checkpoint
from signing.keys import PublicKey, SigningKey

log = structlog.get_logger("tongban.audit")

MAX_ENTRIES_PER_TRANSACTION = 500

_Pending = tuple[AuditEntry, "asyncio.Future[StoredAuditEntry]"]


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

    async def record(self, entry: AuditEntry) -> StoredAuditEntry:
        """Commit `entry`; returns it with its leaf once it is durable.

        Raises `StoreError` if it is not, for this entry only: an entry the database
        refuses fails its own caller, never the others committed in the same group.
        """
        if self._queue is None:
            return (await asyncio.to_thread(self.store.append, [entry]))[0]
        done: asyncio.Future[StoredAuditEntry] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, done))
        return await done

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
                await self._commit(pending)
            except Exception as exc:  # every waiter must hear of any failure, and the loop live on
                _fail(pending, exc)
            finally:
                for _ in pending:
                    queue.task_done()

    async def _commit(self, pending: list[_Pending]) -> None:
        """One transaction for the whole group; when it fails, each entry again on its own
        so that one bad entry (a value the database refuses) fails only its caller."""
        try:
            stored = await asyncio.to_thread(self.store.append, [entry for entry, _ in pending])
        except Exception as exc:
            if len(pending) == 1:
                _fail(pending, exc)
                return
            for one in pending:
                try:
                    (alone,) = await asyncio.to_thread(self.store.append, [one[0]])
                except Exception as single:  # this entry's own failure, for its caller only
                    _fail([one], single)
                else:
                    _resolve([one], [alone])
            return
        _resolve(pending, stored)


def _resolve(pending: list[_Pending], stored: list[StoredAuditEntry]) -> None:
    for (_, done), kept in zip(pending, stored, strict=True):
        if not done.done():
            done.set_result(kept)


def _fail(pending: list[_Pending], exc: BaseException) -> None:
    reason = exc.message if isinstance(exc, TongbanError) else repr(exc)
    failure = StoreError(f"the audit trail cannot be written: {reason}")
    for _, done in pending:
        if not done.done():
            done.set_exception(failure)
    with contextlib.suppress(Exception):  # a broken log sink must not stop audits
        log.error("audit trail not written", entries=len(pending), error=reason)


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


DEFAULT_ORIGIN = "tongban/audit"


def sign_tree_head(
    store: AuditLog,
    key: SigningKey,
    origin: str = DEFAULT_ORIGIN,
    now: datetime | None = None,
) -> StoredTreeHead | None:
    """Sign the tree as it stands with `key` (the hub's root key) and store the checkpoint.

    Returns the new signed head, or None when the tree is empty or its size is signed
    already. Raises `StoreError`.
    """
    size, root = store.head()
    latest = store.latest_tree_head()
    if size == 0 or (latest is not None and latest.size >= size):
        return None
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    note = checkpoint.sign_tree_head(
        checkpoint.TreeHead(origin, size, bytes.fromhex(root), moment), key
    )
    store.add_tree_head(size, root, moment, note)
    return StoredTreeHead(size, root, moment, note)


def verified_tree_heads(store: AuditLog, root: PublicKey) -> tuple[dict[int, str], str | None]:
    """The stored signed heads whose signature verifies under `root` (size → root hex),
    and the first problem: a head whose signature fails, or whose row differs from what
    was signed, means someone edited the heads themselves."""
    good: dict[int, str] = {}
    for stored in store.tree_heads():
        try:
            head = checkpoint.open_tree_head(stored.note, root)
        except TongbanError:
            return good, f"the signed tree head of size {stored.size} does not verify"
        if head.size != stored.size or head.root.hex() != stored.root:
            return good, f"the tree head of size {stored.size} differs from what was signed"
        good[head.size] = head.root.hex()
    return good, None
