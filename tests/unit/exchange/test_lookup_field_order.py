"""A looked-up record's fields reach the CLI table in the record type's declared order."""

from __future__ import annotations

import io

from google.protobuf import struct_pb2
from rich.console import Console

from exchange.app.lookup import _in_declared_order
from exchange.cli.client import print_lookup
from exchange.generated import common_pb2, exchange_pb2
from exchange.settings import RecordTypeSettings

DECLARED = RecordTypeSettings(
    fields={"name": "string", "gender": "string", "birth_date": "string", "address": "string"}
)


def test_fields_are_put_in_declared_order_with_undeclared_ones_after() -> None:
    fields = {"zeta": 1, "address": "a", "name": "n", "birth_date": "b"}

    ordered = _in_declared_order(fields, DECLARED)

    assert list(ordered) == ["name", "birth_date", "address", "zeta"]
    assert ordered == fields
    assert list(_in_declared_order(fields, None)) == list(fields)


def test_the_cli_table_follows_the_hubs_field_order() -> None:
    struct = struct_pb2.Struct()
    struct.update({"address": "北京市东城区", "name": "张三", "birth_date": "1990-03-07"})
    response = exchange_pb2.LookupResponse(request_id="r1")
    response.records.append(
        common_pb2.Record(
            record_type="population.resident",
            fields=struct,
            field_order=["name", "birth_date", "address"],
        )
    )
    output = io.StringIO()

    print_lookup(response, Console(file=output, width=120))

    shown = output.getvalue()
    positions = [shown.index(name) for name in ("name", "birth_date", "address")]
    assert positions == sorted(positions)
