"""The API's proto3 JSON encoder gives exactly what json_format.MessageToDict gives."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from exchange.generated import (
    adapters_pb2,
    audit_pb2,
    certificates_pb2,
    common_pb2,
    exchange_pb2,
    sync_pb2,
    verification_pb2,
)
from exchange.http.messages import to_json


def _lookup() -> exchange_pb2.LookupResponse:
    answer = exchange_pb2.LookupResponse(
        subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X"),
        request_id="r-1",
        partial=True,
        receipt="a.b.c",
    )
    record = answer.records.add(record_type="population.resident", stale=True)
    record.fields.update({"name": "张三", "age": 3, "ok": True, "none": None, "list": [1, "x"]})
    record.provenance.fetched_at.FromSeconds(1_760_000_000)
    record.provenance.fetched_at.nanos = 120_000_000
    record.related_subjects.add(kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43")
    source = answer.sources.add(adapter_id="psb", outcome=common_pb2.SOURCE_OUTCOME_OK)
    source.latency.FromMilliseconds(1500)
    answer.sources.add(adapter_id="x", outcome=77)  # an enum number no name knows
    return answer


def _samples() -> list[object]:
    job = sync_pb2.SyncJob(job_id="7", adapter_id="a", state=sync_pb2.SYNC_JOB_STATE_RUNNING)
    job.progress.records_seen = 2**40
    job.progress.records_per_second = 12.5
    trail = audit_pb2.ListAccessResponse(next_page_token="t")
    entry = trail.entries.add(sequence=3, leaf_index=9, leaf_data=b"\x00\xffbytes")
    entry.inclusion_proof.append(b"\x01\x02")
    verdict = verification_pb2.Verdict(valid=False)
    verdict.checks.add(check=1, passed=False, reason="no")
    info = adapters_pb2.AdapterInfo()
    info.spec.settings.update({"entry_point": "x", "n": 1.5})
    return [
        _lookup(),
        exchange_pb2.LookupResponse(),
        sync_pb2.SyncServiceWatchResponse(job=job),
        trail,
        verdict,
        info,
        certificates_pb2.ListByHolderResponse(next_page_token="p"),
    ]


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_to_json_equals_message_to_dict(message) -> None:
    assert to_json(message) == json_format.MessageToDict(message)
