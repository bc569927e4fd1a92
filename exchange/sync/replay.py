"""Replaying a dead letter once its row (or the hub's configuration) has been fixed.

A dead letter keeps the row the source sent (when the adapter kept it) and, for a row
that mapped but broke its record type, the record as mapped. Replay maps the fixed row
(given by the operator, or the kept one when the fix was in the configuration) through
the adapter's mapping of the dead letter's record type, checks it like a sync job
would, and stores it; the dead letter is then REPLAYED. When the check fails again the
dead letter stays OPEN with the new reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.base import Adapter, ChangeKind
from adapters.mapping import AdapterOptions, RecordMapping
from certstore.sync_jobs import SyncJobRepository
from domain.errors import FailedPrecondition, InvalidKey, InvalidRequest
from domain.records import SourceRecord
from domain.subjects import parse_key
from domain.sync_jobs import DeadLetter, DeadLetterState
from exchange.record_types import RecordTypes

__all__ = ["record_from_document", "replay_dead_letter"]


async def replay_dead_letter(
    repository: SyncJobRepository,
    adapter: Adapter,
    record_types: RecordTypes,
    dead_letter_id: int,
    *,
    fixed_row: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> DeadLetter:
    """Apply dead letter `dead_letter_id` of `adapter`, from `fixed_row` when given.

    Raises:
        NotFound: there is no such dead letter.
        FailedPrecondition: it is not OPEN, belongs to another adapter, or kept nothing
            to replay and no fixed row was given.
        InvalidRequest: the row still cannot become a valid record (``row`` or
            ``record``); the dead letter keeps the new reason.
        StoreError: the database failed or is unreachable.
    """
    moment = now or datetime.now(UTC)
    letter = await asyncio.to_thread(repository.dead_letter, dead_letter_id)
    if letter.adapter_id != adapter.adapter_id:
        raise FailedPrecondition(
            f"dead letter {dead_letter_id} belongs to adapter {letter.adapter_id}"
        )
    if letter.state is not DeadLetterState.OPEN:
        raise FailedPrecondition(
            f"dead letter {dead_letter_id} is {letter.state.value}; only OPEN ones are replayed"
        )
    try:
        record = _record_of(letter, adapter, fixed_row)
        if record.record_type not in adapter.spec.serves:
            problem: str | None = f"the adapter does not serve {record.record_type}"
        else:
            problem = record_types.problem(record)
        if problem is not None:
            raise InvalidRequest("row", problem)
    except InvalidRequest as exc:
        await asyncio.to_thread(repository.note_replay_failure, dead_letter_id, exc.rule, moment)
        raise
    return await asyncio.to_thread(
        repository.replay,
        dead_letter_id,
        record,
        department=adapter.spec.department,
        now=moment,
        raw=fixed_row,
    )


def _record_of(
    letter: DeadLetter, adapter: Adapter, fixed_row: Mapping[str, Any] | None
) -> SourceRecord:
    row = fixed_row if fixed_row is not None else letter.raw
    if row is not None:
        mapping = _mapping_for(adapter, letter.record_type)
        change = mapping.map_change(row, where=letter.source_record_id)
        if change.kind is ChangeKind.DELETE:
            raise InvalidRequest("row", "the row marks the record deleted; nothing to replay")
        if change.kind is ChangeKind.REJECTED or change.record is None:
            raise InvalidRequest("row", change.reason or "the row does not map to a record")
        return change.record
    if letter.record is not None:
        return record_from_document(letter.record)
    raise FailedPrecondition(
        f"dead letter {letter.dead_letter_id} kept no row; give the fixed row, "
        "or fix it at the source and sync again"
    )


def _mapping_for(adapter: Adapter, record_type: str) -> RecordMapping:
    options = getattr(adapter, "options", None)
    if isinstance(options, AdapterOptions):
        for mapping in options.mappings:
            if mapping.record_type == record_type:
                return mapping
    raise FailedPrecondition(
        f"adapter {adapter.adapter_id} has no declared mapping for {record_type}; "
        "its rows cannot be replayed here"
    )


def record_from_document(document: Mapping[str, Any]) -> SourceRecord:
    """The record a dead letter kept (`exchange.sync.runner.record_document`).

    Raises `InvalidRequest` naming ``record`` when the document is not one.
    """
    try:
        subject = parse_key(document["subject"]["kind"], document["subject"]["value"])
        related = tuple(
            parse_key(key["kind"], key["value"]) for key in document.get("related_subjects", [])
        )
        updated = document.get("updated_at")
        return SourceRecord(
            record_type=str(document["record_type"]),
            source_record_id=str(document["source_record_id"]),
            subject=subject,
            fields=dict(document["fields"]),
            related_subjects=related,
            updated_at=datetime.fromisoformat(updated) if updated else None,
        )
    except InvalidKey as exc:
        raise InvalidRequest("record.subject", exc.key_rule) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest("record", f"not a kept record: {exc!r}") from exc
