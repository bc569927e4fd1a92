"""Receipts: the hub's signed statement of what one Lookup answer said.

A receipt is a compact JWS (typ ``tongban-receipt+jws``) by the hub's root key over the
RFC 8785 canonical JSON of its claims: who asked (caller), about whom (the subject's
normalized key hashed with the answer's request id, and its masked form), why (case id
and reason), when, what each consulted source did (outcome, latency, record count), and
for each returned record its source, source record id, type, fetch time, content hash
and a hash of exactly the fields returned (after minimization), plus where the access
sits in the audit log (leaf index and leaf hash).

`AnswerView` is an answer reduced to what a receipt binds; the hub builds one from the
answer it is about to send, a verifier from the answer it was given (proto3 JSON), so
`verify_receipt` can name each record that was tampered with, dropped or added.

Pure: no I/O. Stock JOSE libraries verify the signature with the root JWK.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.errors import TongbanError
from domain.records import canonical_json
from signing.jws import sign_compact, verify_compact
from signing.keys import PublicKey, SigningKey

TYP_RECEIPT = "tongban-receipt+jws"
RECEIPT_VERSION = 1
# Latency is carried in whole milliseconds; a verifier reading the answer's Duration
# allows this much rounding.
LATENCY_SLACK_MS = 1


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the one spelling receipts use."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fields_hash(fields: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of the fields as returned."""
    return "sha256:" + hashlib.sha256(canonical_json(dict(fields))).hexdigest()


def subject_digest(request_id: str, kind: str, value: str) -> str:
    """SHA-256 over the request id and the normalized key: anyone holding the answer can
    recompute it, and two receipts about one person do not share it."""
    message = f"tongban-receipt-subject\n{request_id}\n{kind}:{value}".encode()
    return "sha256:" + hashlib.sha256(message).hexdigest()


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    adapter_id: str
    record_type: str
    source_record_id: str
    fetched_at: str
    content_hash: str
    fields_hash: str
    stale: bool = False
    # SHA-256 of the department's JWS over the record, when it signed one.
    department_signature: str | None = None

    def key(self) -> tuple[str, str, str]:
        return (self.adapter_id, self.record_type, self.source_record_id)

    def name(self) -> str:
        return f"{self.adapter_id}/{self.record_type}/{self.source_record_id}"

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "adapter_id": self.adapter_id,
            "record_type": self.record_type,
            "source_record_id": self.source_record_id,
            "fetched_at": self.fetched_at,
            "content_hash": self.content_hash,
            "fields_hash": self.fields_hash,
            "stale": self.stale,
        }
        if self.department_signature is not None:
            out["department_signature"] = self.department_signature
        return out


@dataclass(frozen=True, slots=True)
class ReceiptSource:
    adapter_id: str
    outcome: str
    latency_ms: int
    record_count: int

    def claims(self) -> dict[str, Any]:
        return {
            "adapter_id": self.adapter_id,
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
            "record_count": self.record_count,
        }


@dataclass(frozen=True, slots=True)
class AnswerView:
    """What a receipt binds of one answer."""

    request_id: str
    subject_kind: str
    subject_value: str
    records: tuple[ReceiptRecord, ...]
    sources: tuple[ReceiptSource, ...]
    partial: bool


@dataclass(frozen=True, slots=True)
class AuditPosition:
    log: str
    leaf_index: int
    leaf_hash: str


def receipt_claims(
    answer: AnswerView,
    *,
    caller: str,
    subject_masked: str,
    case_id: str,
    reason: str,
    issued_at: datetime,
    audit: AuditPosition,
) -> dict[str, Any]:
    """The claims of the receipt for `answer`."""
    return {
        "v": RECEIPT_VERSION,
        "request_id": answer.request_id,
        "issued_at": format_time(issued_at),
        "caller": caller,
        "subject": {
            "kind": answer.subject_kind,
            "digest": subject_digest(answer.request_id, answer.subject_kind, answer.subject_value),
            "masked": subject_masked,
        },
        "purpose": {"case_id": case_id, "reason": reason},
        "partial": answer.partial,
        "sources": [s.claims() for s in answer.sources],
        "records": [r.claims() for r in answer.records],
        "audit": {"log": audit.log, "leaf_index": audit.leaf_index, "leaf_hash": audit.leaf_hash},
    }


def sign_receipt(claims: Mapping[str, Any], key: SigningKey) -> str:
    return sign_compact(canonical_json(dict(claims)), key, typ=TYP_RECEIPT)


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ReceiptVerdict:
    checks: tuple[ReceiptCheck, ...]
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def open_receipt(token: str, root: PublicKey) -> dict[str, Any]:
    """The claims of a receipt signed by `root`. Raises `VerificationError` subclasses."""
    claims = json.loads(verify_compact(token.strip(), root, typ=TYP_RECEIPT).payload)
    if not isinstance(claims, dict) or claims.get("v") != RECEIPT_VERSION:
        from signing.errors import MalformedDocument

        raise MalformedDocument("receipt: not a version 1 receipt")
    return claims


def _record_from_claims(claims: Mapping[str, Any]) -> ReceiptRecord:
    return ReceiptRecord(
        adapter_id=str(claims.get("adapter_id", "")),
        record_type=str(claims.get("record_type", "")),
        source_record_id=str(claims.get("source_record_id", "")),
        fetched_at=str(claims.get("fetched_at", "")),
        content_hash=str(claims.get("content_hash", "")),
        fields_hash=str(claims.get("fields_hash", "")),
        stale=bool(claims.get("stale", False)),
        department_signature=claims.get("department_signature"),
    )


def _compare_records(
    signed: Sequence[ReceiptRecord], given: Sequence[ReceiptRecord]
) -> list[ReceiptCheck]:
    checks: list[ReceiptCheck] = []
    by_key = {r.key(): r for r in signed}
    seen: set[tuple[str, str, str]] = set()
    for record in given:
        expected = by_key.get(record.key())
        if expected is None:
            checks.append(
                ReceiptCheck(
                    f"record {record.name()}",
                    False,
                    "not covered by this receipt (added, or from another answer)",
                )
            )
            continue
        seen.add(record.key())
        differences = [
            label
            for label, a, b in (
                ("its fields were changed", expected.fields_hash, record.fields_hash),
                ("its content hash differs", expected.content_hash, record.content_hash),
                ("its fetch time differs", expected.fetched_at, record.fetched_at),
                ("its stale mark differs", expected.stale, record.stale),
                (
                    "its department signature differs",
                    expected.department_signature,
                    record.department_signature,
                ),
            )
            if a != b
        ]
        checks.append(
            ReceiptCheck(
                f"record {record.name()}",
                not differences,
                "; ".join(differences) if differences else "matches the receipt",
            )
        )
    for key, expected in by_key.items():
        if key not in seen:
            checks.append(
                ReceiptCheck(
                    f"record {expected.name()}",
                    False,
                    "in the receipt but missing from the answer (dropped)",
                )
            )
    return checks


def verify_receipt(token: str, root: PublicKey, answer: AnswerView | None = None) -> ReceiptVerdict:
    """Check a receipt's signature and, given the answer, that it describes exactly that
    answer. Never raises for a bad receipt: every problem is a failed check."""
    try:
        claims = open_receipt(token, root)
    except (TongbanError, ValueError) as exc:
        detail = exc.message if isinstance(exc, TongbanError) else str(exc)
        return ReceiptVerdict((ReceiptCheck("signature", False, detail),))
    checks = [ReceiptCheck("signature", True, f"signed by the hub's root key {root.kid}")]
    if answer is None:
        return ReceiptVerdict(tuple(checks), claims)
    checks.append(
        ReceiptCheck(
            "request",
            claims.get("request_id") == answer.request_id,
            "the answer's request id matches"
            if claims.get("request_id") == answer.request_id
            else "the answer's request id is another one (a receipt for another answer)",
        )
    )
    subject = claims.get("subject") or {}
    digest = subject_digest(answer.request_id, answer.subject_kind, answer.subject_value)
    same_subject = subject.get("digest") == digest and subject.get("kind") == answer.subject_kind
    checks.append(
        ReceiptCheck(
            "subject",
            same_subject,
            f"the answer is about {subject.get('masked', '?')}"
            if same_subject
            else "the answer's subject is not the one the receipt names",
        )
    )
    signed_sources = {str(s.get("adapter_id")): s for s in claims.get("sources") or []}
    given_sources = {s.adapter_id: s for s in answer.sources}
    source_problems = sorted(set(signed_sources) ^ set(given_sources))
    for adapter_id in sorted(set(signed_sources) & set(given_sources)):
        signed, given = signed_sources[adapter_id], given_sources[adapter_id]
        if (
            signed.get("outcome") != given.outcome
            or signed.get("record_count") != given.record_count
            or abs(int(signed.get("latency_ms", -(10**9))) - given.latency_ms) > LATENCY_SLACK_MS
        ):
            source_problems.append(adapter_id)
    checks.append(
        ReceiptCheck(
            "sources",
            not source_problems and claims.get("partial") == answer.partial,
            f"{len(given_sources)} sources with their outcomes match"
            if not source_problems and claims.get("partial") == answer.partial
            else "sources differ: " + ", ".join(source_problems or ["partial flag"]),
        )
    )
    signed_records = [_record_from_claims(r) for r in claims.get("records") or []]
    checks.extend(_compare_records(signed_records, answer.records))
    if not signed_records and not answer.records:
        checks.append(ReceiptCheck("records", True, "no records, as the receipt says"))
    return ReceiptVerdict(tuple(checks), claims)


def _get(data: Mapping[str, Any], snake: str, default: Any = None) -> Any:
    """A member of proto3 JSON by its proto name or its lowerCamelCase JSON name."""
    if snake in data:
        return data[snake]
    head, *rest = snake.split("_")
    return data.get(head + "".join(p.title() for p in rest), default)


def _duration_ms(text: object) -> int:
    if isinstance(text, str) and text.endswith("s"):
        try:
            return round(float(text[:-1]) * 1000)
        except ValueError:
            return -1
    return 0


def _parse_time(text: object) -> str:
    if not isinstance(text, str) or not text:
        return ""
    try:
        return format_time(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def answer_from_json(data: Mapping[str, Any]) -> AnswerView:
    """An answer as proto3 JSON (`LookupResponse`, e.g. `tongban lookup --answer`) reduced
    to what its receipt binds. Raises `ValueError` when it is no such answer."""
    if not isinstance(data, Mapping):
        raise ValueError("an answer is a JSON object")
    subject = _get(data, "subject") or {}
    records = []
    for record in _get(data, "records") or []:
        provenance = _get(record, "provenance") or {}
        signature = _get(provenance, "department_signature") or None
        records.append(
            ReceiptRecord(
                adapter_id=str(_get(provenance, "adapter_id", "")),
                record_type=str(_get(record, "record_type", "")),
                source_record_id=str(_get(provenance, "source_record_id", "")),
                fetched_at=_parse_time(_get(provenance, "fetched_at")),
                content_hash=str(_get(provenance, "content_hash", "")),
                fields_hash=fields_hash(_get(record, "fields") or {}),
                stale=bool(_get(record, "stale", False)),
                department_signature=None
                if signature is None
                else "sha256:" + hashlib.sha256(str(signature).encode()).hexdigest(),
            )
        )
    sources = [
        ReceiptSource(
            adapter_id=str(_get(s, "adapter_id", "")),
            outcome=str(_get(s, "outcome", "")).removeprefix("SOURCE_OUTCOME_"),
            latency_ms=_duration_ms(_get(s, "latency", "0s")),
            record_count=int(_get(s, "record_count", 0)),
        )
        for s in _get(data, "sources") or []
    ]
    return AnswerView(
        request_id=str(_get(data, "request_id", "")),
        subject_kind=str(subject.get("kind", "")).removeprefix("KEY_KIND_"),
        subject_value=str(subject.get("value", "")),
        records=tuple(records),
        sources=tuple(sources),
        partial=bool(_get(data, "partial", False)),
    )
