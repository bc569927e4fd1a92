"""Issuing receipts for Lookup answers (transport-free: the servicer and any other
transport hand in domain values and attach the token they get back).

The receipt is signed by the hub's root key, the key verifiers already pin through the
trust bundle. The key is looked up at most once a minute and kept opened in memory.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from certstore.audit import StoredAuditEntry
from domain.errors import StoreError, TongbanError
from domain.records import Purpose, StoredRecord
from domain.subjects import SubjectKey
from exchange.certificates.keys import KeyManager
from signing import receipt
from signing.keys import SigningKey

log = structlog.get_logger("tongban.receipts")

KEY_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class ReturnedRecord:
    """One record as the answer returns it: after minimization, possibly stale."""

    record: StoredRecord
    fields: Mapping[str, Any]
    stale: bool
    department_signature: str | None = None


@dataclass(frozen=True)
class ConsultedSource:
    adapter_id: str
    outcome: str
    latency_seconds: float
    record_count: int


def answer_view(
    request_id: str,
    subject: SubjectKey,
    records: Sequence[ReturnedRecord],
    sources: Sequence[ConsultedSource],
    partial: bool,
) -> receipt.AnswerView:
    """What the receipt of this answer binds."""
    return receipt.AnswerView(
        request_id=request_id,
        subject_kind=subject.kind.value,
        subject_value=subject.value,
        records=tuple(
            receipt.ReceiptRecord(
                adapter_id=r.record.adapter_id,
                record_type=r.record.record_type,
                source_record_id=r.record.source_record_id,
                fetched_at=receipt.format_time(r.record.fetched_at),
                # Only the disclosed fields' hash (issue 17 §1), as in the answer itself.
                content_hash=r.record.disclosed(r.fields).content_hash,
                fields_hash=receipt.fields_hash(r.fields),
                stale=r.stale,
                department_signature=None
                if r.department_signature is None
                else "sha256:" + hashlib.sha256(r.department_signature.encode()).hexdigest(),
            )
            for r in records
        ),
        sources=tuple(
            receipt.ReceiptSource(
                adapter_id=s.adapter_id,
                outcome=s.outcome,
                latency_ms=round(s.latency_seconds * 1000),
                record_count=s.record_count,
            )
            for s in sources
        ),
        partial=partial,
    )


class ReceiptIssuer:
    """Signs receipts with the hub's root key. Safe to share between threads."""

    def __init__(self, keys: KeyManager, log_origin: str) -> None:
        self._keys = keys
        self._origin = log_origin
        self._lock = threading.Lock()
        self._key: SigningKey | None = None
        self._checked = float("-inf")

    def _signing_key(self) -> SigningKey | None:
        now = time.monotonic()
        if now - self._checked < KEY_REFRESH_SECONDS:
            return self._key
        with self._lock:
            if now - self._checked >= KEY_REFRESH_SECONDS:
                root = self._keys.root()
                self._key = None if root is None else self._keys.open(root)
                self._checked = now
        return self._key

    def issue(
        self,
        answer: receipt.AnswerView,
        *,
        caller: str,
        subject: SubjectKey,
        purpose: Purpose,
        issued_at: datetime,
        audited: StoredAuditEntry,
    ) -> str:
        """The receipt of `answer` ("" when this node cannot sign: no root key here)."""
        try:
            key = self._signing_key()
        except StoreError:
            raise
        except TongbanError as exc:
            log.warning("receipt not signed: the root key does not open", error=exc.message)
            return ""
        if key is None:
            log.warning("receipt not signed: this node has no root key")
            return ""
        claims = receipt.receipt_claims(
            answer,
            caller=caller,
            subject_masked=subject.masked(),
            case_id=purpose.case_id,
            reason=purpose.reason,
            issued_at=issued_at,
            audit=receipt.AuditPosition(self._origin, audited.leaf_index, audited.leaf_hash),
        )
        return receipt.sign_receipt(claims, key)
