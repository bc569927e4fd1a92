"""An example `python` adapter plug-in: a county registry that answers from a table."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.base import Adapter, Rejection
from domain.records import Purpose, SourceRecord
from domain.subjects import SubjectKey

_RESIDENTS = {"11010519491231002X": {"name": "王伟", "village": "东坝村"}}


class ExampleRegistry(Adapter):
    """Answers `county.resident` records for the residents in its table."""

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord | Rejection]:
        fields = _RESIDENTS.get(subject.value)
        if fields is None or "county.resident" not in record_types:
            return []
        greeting = self.spec.options.get("greeting", "")
        return [
            SourceRecord(
                record_type="county.resident",
                source_record_id=f"C-{subject.value[-4:]}",
                subject=subject,
                fields={**fields, "greeting": greeting},
            )
        ]
