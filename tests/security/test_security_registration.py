"""Run-time registration may not reach into the hub (issue 16 §1) and the registry keeps
secrets sealed and every change audited (issue 17 §5, §6): through the real hub in
production (mTLS) and dev mode, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2

from adapters.base import CONCEALED
from domain.errors import ConfigError
from exchange.auth.policy import PolicySettings
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import RegistrationSettings, Settings, load_settings

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "adapters"
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
PSB = "11320100MB0000000J"
AMR = "11320100MB1111116K"
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="C-1", reason="registration test")
SECRET = "s3cret-token"


def _department_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tongban_test_http_department", ASSETS / "http_department.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


department_module = _department_module()


@pytest.fixture
def department() -> Any:
    server = department_module.HttpDepartment().start()
    yield server
    server.stop()


def port_of(department: Any) -> int:
    return int(department.base_url.rsplit(":", 1)[1].strip("/"))


def http_options(base_url: str, **changes: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "fetch": {"path": "/api/v1/residents/{key}", "params": {"kind": "{key_kind}"}},
        "records_path": "data.items",
        "auth_header": "X-Api-Token",
        "auth_token": SECRET,
        "mappings": [
            {
                "record_type": "population.resident",
                "key_kind": "ID_CARD",
                "key_field": "idNo",
                "id_field": "recordNo",
                "field_map": {"name": "xm", "birth_date": "csrq"},
            }
        ],
        **changes,
    }


def spec(
    kind: int,
    options: dict[str, Any],
    *,
    adapter_id: str = "county.population",
    uscc: str = PSB,
) -> adapters_pb2.AdapterSpec:
    settings = struct_pb2.Struct()
    settings.update(options)
    return adapters_pb2.AdapterSpec(
        adapter_id=adapter_id,
        department="县公安局",
        department_uscc=uscc,
        kind=kind,
        serves=[
            adapters_pb2.RecordTypeBinding(
                record_type="population.resident", key_kinds=[common_pb2.KEY_KIND_ID_CARD]
            )
        ],
        settings=settings,
    )


def register(channel: grpc.aio.Channel, message: adapters_pb2.AdapterSpec) -> Any:
    return adapters_pb2_grpc.AdapterRegistryStub(channel).Register(
        adapters_pb2.RegisterRequest(spec=message)
    )


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def audited(hub: Hub, action: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (stored.entry.outcome, dict(stored.entry.detail))
        for stored in hub.audit.store.entries()
        if stored.entry.action == action
    ]


Start = Callable[..., Awaitable[tuple[HubServer, Callable[[str], grpc.aio.Channel]]]]


@pytest.fixture(params=["production", "dev"])
async def start(
    request: pytest.FixtureRequest, secure_settings: Settings, pki: Any, database_url: str, tmp_path
) -> AsyncIterator[Start]:
    """Start a hub with the given [registration]; returns it and a channel opener
    (production: mTLS as a test caller; dev: anonymous, whoever is asked for)."""
    started: list[HubServer] = []
    opened: list[grpc.aio.Channel] = []
    mode = request.param

    async def run(registration: dict[str, Any] | None = None, **overrides: Any):
        if mode == "production":
            settings = secure_settings.model_copy(
                update={"registration": RegistrationSettings.model_validate(registration or {})}
            )
        else:
            settings = load_settings(
                EXAMPLE,
                data_dir=str(tmp_path / "data"),
                registration=registration or {},
                **{"database.url": database_url},
            )
        if overrides:
            settings = settings.model_copy(update=overrides)
        server = HubServer(Hub.open(settings), "127.0.0.1:0")
        await server.start()
        started.append(server)
        root = (pki.folder / "ca.crt").read_bytes()

        def open_as(who: str) -> grpc.aio.Channel:
            if mode == "dev":
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            else:
                files = pki.clients[who]
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=root,
                    private_key=files.private_key.read_bytes(),
                    certificate_chain=files.certificate.read_bytes(),
                )
                channel = grpc.aio.secure_channel(f"localhost:{server.port}", credentials)
            opened.append(channel)
            return channel

        return server, open_as

    yield run
    for channel in opened:
        await channel.close()
    for server in started:
        await server.stop(grace=0.5)


async def test_only_network_kinds_are_registrable_by_default(start, database_url):
    server, open_as = await start()
    psb = open_as("psb")
    for kind, options in (
        (adapters_pb2.ADAPTER_KIND_SQL, {"url": database_url, "query": "select 1"}),
        (adapters_pb2.ADAPTER_KIND_FILE, {"folder": "/etc"}),
        (adapters_pb2.ADAPTER_KIND_PYTHON, {"entry_point": "demo-population"}),
    ):
        error = await refused(register(psb, spec(kind, options)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.details().startswith("spec.kind: department 11320100MB0000000J may not")
    denied = audited(server.hub, "ADAPTER_REGISTER")
    assert [outcome for outcome, _ in denied] == ["DENIED"] * 3
    assert {detail["kind"] for _, detail in denied} == {"sql", "file", "python"}


async def test_an_allowed_sql_kind_still_never_reads_the_hub_store(start, database_url):
    server, open_as = await start({"departments": [{"uscc": PSB, "kinds": ["sql", "file"]}]})
    psb = open_as("psb")
    mappings = http_options("http://x")["mappings"]
    own_store = {
        "url": database_url,
        "query": "select * from signing_keys where 1 = :key",
        "mappings": mappings,
    }
    error = await refused(register(psb, spec(adapters_pb2.ADAPTER_KIND_SQL, own_store)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "spec.settings.url: is the hub's own store; an adapter never reads it"
    )
    data_dir = server.hub.settings.data_dir
    error = await refused(
        register(
            psb,
            spec(
                adapters_pb2.ADAPTER_KIND_FILE,
                {"folder": str(data_dir / "keys"), "mappings": mappings},
            ),
        )
    )
    assert error.details() == "spec.settings.folder: may not read the hub's own data folder"
    assert [o for o, _ in audited(server.hub, "ADAPTER_REGISTER")] == ["DENIED", "DENIED"]


async def test_http_targets_must_be_on_the_departments_egress_list(start, department):
    port = port_of(department)
    wide = {"departments": [{"uscc": PSB, "egress": ["0.0.0.0/0", "localhost", "10.0.0.0/8"]}]}
    _server, open_as = await start(wide)
    psb = open_as("psb")
    for base_url, rule in (
        (f"http://127.0.0.1:{port}", "special address"),
        (f"http://localhost:{port}", "special address"),
        (f"http://[::1]:{port}", "special address"),
        (f"http://169.254.169.254:{port}", "special address"),
        (f"http://0.0.0.0:{port}", "special address"),
    ):
        error = await refused(
            register(psb, spec(adapters_pb2.ADAPTER_KIND_HTTP, http_options(base_url)))
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, base_url
        assert error.details().startswith("spec.settings.base_url: "), error.details()
        assert rule in error.details()


async def test_no_egress_list_means_no_target(start, department):
    _server, open_as = await start()
    options = http_options(f"http://127.0.0.1:{port_of(department)}")
    error = await refused(register(open_as("psb"), spec(adapters_pb2.ADAPTER_KIND_HTTP, options)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "has no egress allowlist" in error.details()


async def test_an_explicitly_allowed_target_works_and_keeps_its_secret(start, department):
    port = port_of(department)
    server, open_as = await start({"departments": [{"uscc": PSB, "egress": ["127.0.0.0/8"]}]})
    psb = open_as("psb")
    options = http_options(f"http://127.0.0.1:{port}")
    answer = await register(psb, spec(adapters_pb2.ADAPTER_KIND_HTTP, options))
    assert answer.adapter.origin == adapters_pb2.ADAPTER_ORIGIN_REGISTERED
    looked_up = await exchange_pb2_grpc.ExchangeServiceStub(open_as("hall")).Lookup(
        exchange_pb2.LookupRequest(
            subject=PERSON, purpose=common_pb2.Purpose(case_id="C-1", reason="企业开办 核验")
        )
    )
    county = next(s for s in looked_up.sources if s.adapter_id == "county.population")
    assert county.outcome == common_pb2.SOURCE_OUTCOME_OK, county.detail
    # The token is sealed at rest (production) and never listed (both modes).
    listed = await adapters_pb2_grpc.AdapterRegistryStub(psb).List(adapters_pb2.ListRequest())
    assert SECRET.encode() not in listed.SerializeToString()
    registered = next(a for a in listed.adapters if a.spec.adapter_id == "county.population")
    assert not registered.spec.settings.fields
    hub = server.hub
    with hub.database.engine.connect() as connection:
        rows = (
            connection.execute(
                sa.text(
                    "select spec from adapter_registrations where adapter_id = 'county.population'"
                )
            )
            .scalars()
            .all()
        )
    stored = str(rows)
    if hub.settings.server.mode == "production":
        assert SECRET not in stored
        assert "$sealed" in stored
    # A hub restarted on the same store opens the sealed options again.
    restarted = Hub.open(hub.settings)
    try:
        again = next(a for a in restarted.adapters if a.adapter_id == "county.population")
        assert again.spec.options["auth_token"] == SECRET
    finally:
        await restarted.close()
    # The hub's own port is refused although 127.0.0.1 is allowed on other ports.
    own = http_options(f"http://127.0.0.1:{server.port}")
    error = await refused(
        register(psb, spec(adapters_pb2.ADAPTER_KIND_HTTP, own, adapter_id="county.loop"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await adapters_pb2_grpc.AdapterRegistryStub(psb).Deregister(
        adapters_pb2.DeregisterRequest(adapter_id="county.population")
    )
    assert [o for o, _ in audited(hub, "ADAPTER_REGISTER")] == ["OK", "DENIED"]
    assert [o for o, _ in audited(hub, "ADAPTER_DEREGISTER")] == ["OK"]
    for _, detail in audited(hub, "ADAPTER_REGISTER"):
        assert SECRET not in str(detail)


async def test_a_registered_adapters_failure_reaches_callers_only_as_a_generic_reason(
    start, department
):
    closed = port_of(department)  # nothing listens there once the department stops
    department.stop()
    _server, open_as = await start(
        {"departments": [{"uscc": PSB, "egress": [f"127.0.0.1:{closed}"]}]}
    )
    await register(
        open_as("psb"),
        spec(adapters_pb2.ADAPTER_KIND_HTTP, http_options(f"http://127.0.0.1:{closed}")),
    )
    looked_up = await exchange_pb2_grpc.ExchangeServiceStub(open_as("hall")).Lookup(
        exchange_pb2.LookupRequest(
            subject=PERSON, purpose=common_pb2.Purpose(case_id="C-1", reason="企业开办 核验")
        )
    )
    county = next(s for s in looked_up.sources if s.adapter_id == "county.population")
    assert county.outcome == common_pb2.SOURCE_OUTCOME_ERROR
    assert county.detail == f"adapter county.population: {CONCEALED}"
    listed = await adapters_pb2_grpc.AdapterRegistryStub(open_as("psb")).List(
        adapters_pb2.ListRequest()
    )
    info = next(a for a in listed.adapters if a.spec.adapter_id == "county.population")
    assert info.health.last_error == county.detail
    assert str(closed) not in info.health.last_error


async def test_an_adapter_id_belongs_to_the_department_that_registered_it(
    start, department, secure_settings
):
    port = port_of(department)
    everyone = {"departments": [{"uscc": "*", "egress": [f"127.0.0.1:{port}"]}]}
    registrars = PolicySettings.model_validate(
        {"caller": "11320100MB3333337K/*", "rpcs": ["AdapterRegistry/*"]}
    )
    server, open_as = await start(everyone, policies=[*secure_settings.policies, registrars])
    options = http_options(f"http://127.0.0.1:{port}")
    await register(open_as("psb"), spec(adapters_pb2.ADAPTER_KIND_HTTP, options))
    mode = server.hub.settings.server.mode
    # Another department (in dev: anyone naming another USCC) cannot take it over.
    taker, uscc = ("stranger", "11320100MB3333337K") if mode == "production" else ("psb", AMR)
    error = await refused(
        register(open_as(taker), spec(adapters_pb2.ADAPTER_KIND_HTTP, options, uscc=uscc))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "spec.adapter_id: adapter 'county.population' belongs to another department; "
        "choose another id"
    )
    # Nor the id of a configured adapter.
    error = await refused(
        register(
            open_as("psb"),
            spec(adapters_pb2.ADAPTER_KIND_HTTP, options, adapter_id="psb.population"),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details().startswith("spec.adapter_id: ")
    outcomes = [o for o, _ in audited(server.hub, "ADAPTER_REGISTER")]
    assert outcomes == ["OK", "DENIED", "DENIED"]


TEMPLATES = [
    ("format spec", {"fetch": {"path": "/r/{key:>100000000}"}}, "spec.settings.fetch.path"),
    ("conversion", {"fetch": {"path": "/r/{key!r}"}}, "spec.settings.fetch.path"),
    ("attribute", {"fetch": {"path": "/r/{key.__class__}"}}, "spec.settings.fetch.path"),
    (
        "param spec",
        {"fetch": {"path": "/r/{key}", "params": {"k": "{key_kind:^999}"}}},
        "spec.settings.fetch.params",
    ),
    ("CRLF in a header", {"headers": {"X-A": "1\r\nX-Evil: 2"}}, "spec.settings"),
    ("header name", {"headers": {"X A\r\n": "1"}}, "spec.settings"),
    ("CRLF in the token", {"auth_token": "t\r\nX-Evil: 1"}, "spec.settings"),
]


@pytest.mark.parametrize(
    ("changes", "field"), [c[1:] for c in TEMPLATES], ids=[c[0] for c in TEMPLATES]
)
async def test_http_templates_and_headers_are_checked_at_registration(start, changes, field):
    server, open_as = await start({"departments": [{"uscc": PSB, "egress": ["127.0.0.1:9"]}]})
    options = http_options("http://127.0.0.1:9", **changes)
    error = await refused(register(open_as("psb"), spec(adapters_pb2.ADAPTER_KIND_HTTP, options)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field), error.details()
    assert [o for o, _ in audited(server.hub, "ADAPTER_REGISTER")] == ["REFUSED"]


def test_a_configured_sql_adapter_on_the_hubs_own_store_stops_the_start(database_url, tmp_path):
    settings = load_settings(
        EXAMPLE,
        data_dir=str(tmp_path),
        adapters=[
            {
                "id": "thief",
                "kind": "sql",
                "department": "x",
                "department_uscc": PSB,
                "serves": [{"record_type": "population.resident", "key_kinds": ["ID_CARD"]}],
                "options": {
                    "url": database_url,
                    "query": "select * from signing_keys where 1 = :key",
                    "mappings": [],
                },
            }
        ],
        **{"database.url": database_url},
    )
    with pytest.raises(ConfigError) as raised:
        Hub.open(settings)
    assert raised.value.setting == "adapters[0].options.url"


async def test_a_registered_grpc_adapter_never_uses_the_hubs_own_files(start):
    server, open_as = await start({"departments": [{"uscc": PSB, "egress": ["10.0.0.0/8"]}]})
    keys = server.hub.settings.data_dir / "keys"
    options = {
        "target": "10.1.2.3:50061",
        "tls": {"ca_file": str(keys / "ca.crt"), "cert_file": "/dev/null", "key_file": "/x"},
    }
    error = await refused(register(open_as("psb"), spec(adapters_pb2.ADAPTER_KIND_GRPC, options)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details().startswith("spec.settings.tls.ca_file: "), error.details()


async def test_a_registered_http_adapter_carries_its_department_keys(start, department):
    """Run-time registration with department keys: its records' signatures verify, a bad
    one is rejected, the keys are published in the trust bundle and survive a restart;
    ownership and egress rules still apply."""
    import json
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from domain.subjects import normalize
    from exchange.generated import verification_pb2, verification_pb2_grpc
    from signing.department import open_department_keys, sign_record
    from signing.keys import PublicKey, SoftwareSigningKey

    key = SoftwareSigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    jwk = {k: v for k, v in key.public_jwk().items() if k in ("kty", "crv", "x")}

    def signer(item: dict[str, Any]) -> str | None:
        fields = {n: item[s] for n, s in (("name", "xm"), ("birth_date", "csrq")) if s in item}
        subject = f"ID_CARD:{normalize(str(item.get('idNo', '')))}"
        record_id = str(item.get("recordNo"))
        if record_id == "R1b":
            fields = {**fields, "name": "别人"}
        return sign_record(
            key, "population.resident", record_id, subject, fields, datetime(2026, 1, 1, tzinfo=UTC)
        )

    department.signer = signer
    port = port_of(department)
    server, open_as = await start({"departments": [{"uscc": PSB, "egress": ["127.0.0.0/8"]}]})
    psb = open_as("psb")
    message = spec(adapters_pb2.ADAPTER_KIND_HTTP, http_options(f"http://127.0.0.1:{port}"))
    message.department_keys.add().update(jwk)
    # A malformed key is refused naming it; keys do not lift the ownership rule.
    broken = adapters_pb2.AdapterSpec()
    broken.CopyFrom(message)
    broken.department_keys[0].update({"x": "not-a-key"})
    error = await refused(register(psb, broken))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.department_keys[0]" in (error.details() or "")
    if server.hub.settings.server.mode == "production":
        foreign = adapters_pb2.AdapterSpec()
        foreign.CopyFrom(message)
        foreign.department_uscc = AMR
        error = await refused(register(psb, foreign))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Keys do not lift the egress rule either: the hub's own port stays refused.
    own = adapters_pb2.AdapterSpec()
    own.CopyFrom(message)
    own.adapter_id = "county.loop"
    own.settings.update({"base_url": f"http://127.0.0.1:{server.port}"})
    error = await refused(register(psb, own))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    await register(psb, message)
    looked_up = await exchange_pb2_grpc.ExchangeServiceStub(open_as("hall")).Lookup(
        exchange_pb2.LookupRequest(
            subject=PERSON, purpose=common_pb2.Purpose(case_id="C-1", reason="企业开办 核验")
        )
    )
    county = [r for r in looked_up.records if r.provenance.adapter_id == "county.population"]
    assert [r.provenance.source_record_id for r in county] == ["R1"]
    reasons = {r.source_record_id: r.reason for r in looked_up.rejected}
    assert "other content than the record sent" in reasons["R1b"], reasons
    fields = set(county[0].fields.fields)
    if fields == {"name", "birth_date"}:  # not minimized for this caller: signature shown
        assert county[0].provenance.department_signature.count(".") == 2

    # Published like configured keys (a hub without a root key signs no bundle at all).
    if server.hub.certificates.keys.root() is not None:
        bundle = await verification_pb2_grpc.VerificationServiceStub(
            open_as("hall")
        ).GetTrustBundle(verification_pb2.GetTrustBundleRequest())
        root = PublicKey.from_jwk(json.loads(bundle.root_public_jwk))
        published = open_department_keys(bundle.department_keys, root)
        assert [k.kid for k in published["county.population"]] == [
            k.kid
            for k in next(
                a for a in server.hub.adapters if a.adapter_id == "county.population"
            ).spec.department_keys
        ]
        assert published["county.population"][0].issuer_uscc == PSB

    restarted = Hub.open(server.hub.settings)
    try:
        again = next(a for a in restarted.adapters if a.adapter_id == "county.population")
        assert len(again.spec.department_keys) == 1
    finally:
        await restarted.close()
