"""AdapterRegistry: run-time registrations persist, are validated, and heartbeats matter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2

from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.hub import Hub
from exchange.settings import Settings, load_settings

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
PSB = "11320100MB0000000J"
# These tests register the demo's python plug-in at run time: the hub operator must say
# so for the department (python is never registrable by default, issue 16 §1).
ALLOW_PYTHON = {"departments": [{"uscc": PSB, "kinds": ["python"]}]}


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return load_settings(
        EXAMPLE_CONFIG,
        data_dir=str(tmp_path),
        registration=ALLOW_PYTHON,
        **{"database.url": database_url},
    )


PURPOSE = common_pb2.Purpose(case_id="C-1", reason="registry test")
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")


def spec(adapter_id: str = "county.population", **changes) -> adapters_pb2.AdapterSpec:
    options = struct_pb2.Struct()
    options.update(changes.pop("options", {"entry_point": "demo-population"}))
    message = adapters_pb2.AdapterSpec(
        adapter_id=adapter_id,
        department="县公安局",
        department_uscc="11320100MB0000000J",
        kind=adapters_pb2.ADAPTER_KIND_PYTHON,
        serves=[
            adapters_pb2.RecordTypeBinding(
                record_type="population.resident", key_kinds=[common_pb2.KEY_KIND_ID_CARD]
            )
        ],
        settings=options,
    )
    for name, value in changes.items():
        if isinstance(value, duration_pb2.Duration):
            getattr(message, name).CopyFrom(value)
        elif name == "serves":
            del message.serves[:]
            message.serves.extend(value)
        else:
            setattr(message, name, value)
    return message


async def test_registered_adapter_is_used_listed_and_survives_restart(start_hub, settings):
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        registry = adapters_pb2_grpc.AdapterRegistryStub(channel)
        registered = await registry.Register(adapters_pb2.RegisterRequest(spec=spec()))
        assert registered.adapter.origin == adapters_pb2.ADAPTER_ORIGIN_REGISTERED
        listed = await registry.List(adapters_pb2.ListRequest())
        assert [a.spec.adapter_id for a in listed.adapters] == [
            "psb.population",
            "amr.business",
            "county.population",
        ]
        answer = await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
            exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE)
        )
        assert {s.adapter_id for s in answer.sources} == {"psb.population", "county.population"}
        after_lookup = await registry.List(
            adapters_pb2.ListRequest(record_type="population.resident")
        )
        county = next(a for a in after_lookup.adapters if a.spec.adapter_id == "county.population")
        assert county.health.HasField("last_success_at")
        assert county.health.circuit_state == adapters_pb2.CIRCUIT_STATE_CLOSED
    await server.stop(grace=0.5)

    restarted = Hub.open(settings)
    try:
        assert [a.adapter_id for a in restarted.adapters] == [
            "psb.population",
            "amr.business",
            "county.population",
        ]
    finally:
        await restarted.close()


async def test_deregister_removes_only_run_time_registrations(hub_channel):
    registry = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    await registry.Register(adapters_pb2.RegisterRequest(spec=spec()))
    await registry.Deregister(adapters_pb2.DeregisterRequest(adapter_id="county.population"))
    listed = await registry.List(adapters_pb2.ListRequest())
    assert "county.population" not in [a.spec.adapter_id for a in listed.adapters]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await registry.Deregister(adapters_pb2.DeregisterRequest(adapter_id="county.population"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as configured:
        await registry.Deregister(adapters_pb2.DeregisterRequest(adapter_id="psb.population"))
    assert configured.value.code() == grpc.StatusCode.PERMISSION_DENIED


INVALID = [
    ("no kind", spec(kind=adapters_pb2.ADAPTER_KIND_UNSPECIFIED), "spec.kind"),
    ("unknown kind number", spec(kind=42), "spec.kind"),
    ("bad id", spec("Not An Id!"), "spec.adapter_id"),
    ("no department", spec(department=""), "spec.department"),
    (
        "record type without key kind",
        spec(serves=[adapters_pb2.RecordTypeBinding(record_type="population.resident")]),
        "spec.serves[0].key_kinds",
    ),
    (
        "undeclared record type",
        spec(
            serves=[
                adapters_pb2.RecordTypeBinding(
                    record_type="tax.returns", key_kinds=[common_pb2.KEY_KIND_ID_CARD]
                )
            ]
        ),
        "spec.serves[0].record_type",
    ),
    (
        "unknown key kind",
        spec(
            serves=[
                adapters_pb2.RecordTypeBinding(record_type="population.resident", key_kinds=[77])
            ]
        ),
        "spec.serves[0].key_kinds[0]",
    ),
    ("bad department uscc", spec(department_uscc="91350100M000100Y44"), "spec.department_uscc"),
    (
        "unknown plug-in",
        spec(options={"entry_point": "no-such-plugin"}),
        "spec.settings.entry_point",
    ),
    ("negative timeout", spec(timeout=duration_pb2.Duration(seconds=-1)), "spec.timeout"),
]


@pytest.mark.parametrize(
    ("message", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
async def test_invalid_registrations_name_the_field(hub_channel, message, field):
    registry = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.Register(adapters_pb2.RegisterRequest(spec=message))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field), raised.value.details()
    listed = await registry.List(adapters_pb2.ListRequest())
    assert len(listed.adapters) == 2


async def test_a_configured_id_cannot_be_taken_over(hub_channel):
    registry = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.Register(adapters_pb2.RegisterRequest(spec=spec("psb.population")))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.details().startswith("spec.adapter_id: ")


async def test_missed_heartbeat_marks_the_adapter_down_without_deleting_it(hub_channel):
    registry = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    exchange = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    beating = spec(heartbeat_interval=duration_pb2.Duration(nanos=200_000_000))
    await registry.Register(adapters_pb2.RegisterRequest(spec=beating))
    answer = await registry.Heartbeat(adapters_pb2.HeartbeatRequest(adapter_id="county.population"))
    assert answer.HasField("next_due_at")

    async def county():
        listed = await registry.List(adapters_pb2.ListRequest())
        info = next(a for a in listed.adapters if a.spec.adapter_id == "county.population")
        looked_up = await exchange.Lookup(
            exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE)
        )
        source = next(s for s in looked_up.sources if s.adapter_id == "county.population")
        return info.health.alive, source

    alive, source = await county()
    assert alive
    assert source.outcome == common_pb2.SOURCE_OUTCOME_OK
    await asyncio.sleep(0.4)
    alive, source = await county()
    assert not alive
    assert source.outcome == common_pb2.SOURCE_OUTCOME_ERROR
    assert source.detail.startswith("marked down: no heartbeat since")
    await registry.Heartbeat(adapters_pb2.HeartbeatRequest(adapter_id="county.population"))
    alive, source = await county()
    assert alive
    assert source.outcome == common_pb2.SOURCE_OUTCOME_OK


async def test_heartbeat_for_an_unknown_adapter_is_not_found(hub_channel):
    registry = adapters_pb2_grpc.AdapterRegistryStub(hub_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.Heartbeat(adapters_pb2.HeartbeatRequest(adapter_id="nobody"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


DECLARATION = """
id = "county.population"
kind = "python"
department = "县公安局"
department_uscc = "11320100MB0000000J"
serves = [{ record_type = "population.resident", key_kinds = ["ID_CARD"] }]
options = { entry_point = "demo-population" }
"""


@pytest.mark.parametrize("shape", ["top-level keys", "one [[adapters]] entry"])
async def test_cli_registers_lists_and_removes_an_adapter(start_hub, tmp_path, shape, tongban_cli):
    server = await start_hub()
    hub = f"127.0.0.1:{server.port}"
    body = DECLARATION if shape == "top-level keys" else "[[adapters]]" + DECLARATION
    declaration = tmp_path / "county.toml"
    declaration.write_text(body, encoding="utf-8")

    registered = await tongban_cli("adapters", "register", str(declaration), "--hub", hub)
    listed = await tongban_cli("adapters", "list", "--hub", hub)
    removed = await tongban_cli("adapters", "remove", "county.population", "--hub", hub)
    after = await tongban_cli("adapters", "list", "--hub", hub)

    assert registered.stdout.strip() == "registered county.population", registered.stderr
    assert "county.population" in listed.stdout
    assert removed.stdout.strip() == "removed county.population", removed.stderr
    assert "county.population" not in after.stdout
    assert "psb.population" in after.stdout


async def test_cli_refuses_a_file_of_two_adapters_in_one_line(start_hub, tmp_path, tongban_cli):
    server = await start_hub()
    declaration = tmp_path / "two.toml"
    declaration.write_text(("[[adapters]]" + DECLARATION) * 2, encoding="utf-8")
    result = await tongban_cli(
        "adapters", "register", str(declaration), "--hub", f"127.0.0.1:{server.port}"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tongban: configuration error: {declaration}: "
        "declare exactly one [[adapters]] entry and nothing else"
    )
