"""The registration rules of `exchange.egress`, as tables: allowlist entries, special
addresses, the hub's own listeners, and the connect-time guard (DNS rebinding)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from domain.errors import AdapterError, InvalidRequest, PermissionDenied
from exchange.egress import RegistrationRules, parse_egress, special_address
from exchange.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "tongban.example.toml"
PSB = "11320100MB0000000J"


def rules(*egress: str, tmp_path: Path, kinds: tuple[str, ...] = ()) -> RegistrationRules:
    settings = load_settings(
        EXAMPLE,
        data_dir=str(tmp_path),
        registration={"departments": [{"uscc": PSB, "egress": list(egress), "kinds": list(kinds)}]},
    )
    return RegistrationRules(settings)


ENTRIES = [
    ("10.8.0.0/16", None, "10.8.0.0/16", None),
    ("10.8.0.0/16:443", None, "10.8.0.0/16", (443, 443)),
    ("psb.gov.example:8000-8100", "psb.gov.example", None, (8000, 8100)),
    ("*.gov.example", "*.gov.example", None, None),
    ("[fd00::/8]:443", None, "fd00::/8", (443, 443)),
    ("fd00::1", None, "fd00::1/128", None),
    ("127.0.0.1:*", None, "127.0.0.1/32", None),
]


@pytest.mark.parametrize(("text", "name", "network", "ports"), ENTRIES)
def test_egress_entries_parse(text, name, network, ports):
    entry = parse_egress(text)
    assert entry.name == name
    assert entry.network == (ipaddress.ip_network(network) if network else None)
    assert entry.ports == ports


@pytest.mark.parametrize(
    "text", ["", "a b", "host:0", "host:9-1", "host:70000", "[::1", "host:x", "*.*.example"]
)
def test_bad_egress_entries_are_refused(text):
    with pytest.raises(ValueError, match="egress entry"):
        parse_egress(text)


SPECIAL = [
    ("127.0.0.1", True),
    ("127.255.0.9", True),
    ("::1", True),
    ("::ffff:127.0.0.1", True),
    ("169.254.169.254", True),
    ("fe80::1", True),
    ("0.0.0.0", True),
    ("0.1.2.3", True),
    ("::", True),
    ("224.0.0.1", True),
    ("10.1.2.3", False),
    ("192.168.1.10", False),
    ("8.8.8.8", False),
]


@pytest.mark.parametrize(("address", "special"), SPECIAL)
def test_special_addresses(address, special):
    assert special_address(ipaddress.ip_address(address)) is special


DECISIONS = [
    # (egress list, host, port, allowed)
    (["0.0.0.0/0"], "127.0.0.1", 7000, False),  # a wide entry never allows loopback
    (["127.0.0.0/8"], "127.0.0.1", 7000, True),  # an entry naming loopback does
    (["127.0.0.1:7000"], "127.0.0.1", 7001, False),
    (["localhost"], "localhost", 7000, False),  # a name resolving to loopback: no
    (["127.0.0.0/8"], "127.0.0.1", 50051, False),  # the hub's own listener
    (["127.0.0.1:50051"], "127.0.0.1", 50051, True),  # ... unless named with its port
    (["127.0.0.0/8"], "127.0.0.1", 8080, False),  # the hub's HTTP listener
    (["10.0.0.0/8"], "10.1.2.3", 443, True),
    (["10.0.0.0/8:443"], "10.1.2.3", 80, False),
    (["169.254.0.0/16"], "169.254.169.254", 80, True),
    (["0.0.0.0/0"], "169.254.169.254", 80, False),
]


@pytest.mark.parametrize(("egress", "host", "port", "allowed"), DECISIONS)
def test_target_decisions(tmp_path, egress, host, port, allowed):
    checker = rules(*egress, tmp_path=tmp_path)
    if allowed:
        assert checker.check_address(PSB, host, port, "spec.settings.target")
    else:
        with pytest.raises(PermissionDenied, match=r"^spec\.settings\.target: "):
            checker.check_address(PSB, host, port, "spec.settings.target")


def test_a_department_without_a_list_reaches_nothing(tmp_path):
    with pytest.raises(PermissionDenied, match="no egress allowlist"):
        rules("10.0.0.0/8", tmp_path=tmp_path).check_address(
            "11320100MB1111116K", "10.1.2.3", 443, "spec.settings.base_url"
        )


def test_an_unresolvable_name_is_invalid_argument(tmp_path):
    with pytest.raises(InvalidRequest) as raised:
        rules("*.invalid", tmp_path=tmp_path).check_address(
            PSB, "nowhere.invalid", 443, "spec.settings.base_url"
        )
    assert raised.value.field == "spec.settings.base_url"


def test_a_name_outside_the_list_is_refused_without_resolving(tmp_path, monkeypatch):
    import exchange.egress

    def no_dns(*_):
        raise AssertionError("resolved a name that no entry allows")

    monkeypatch.setattr(exchange.egress.socket, "getaddrinfo", no_dns)
    with pytest.raises(PermissionDenied, match="not on the department's egress list"):
        rules("psb.gov.example", tmp_path=tmp_path).check_address(
            PSB, "other.example", 443, "spec.settings.base_url"
        )


def test_the_guard_checks_again_at_connect_time(tmp_path, monkeypatch):
    """DNS rebinding: a name that resolved to an allowed address at registration and to
    loopback later is refused when the adapter connects."""
    import exchange.egress

    answers = {"psb.gov.example": "10.1.2.3"}

    def fake_dns(host, port, **_):
        return [(2, 1, 6, "", (answers[host], port))]

    monkeypatch.setattr(exchange.egress.socket, "getaddrinfo", fake_dns)
    guard = rules("psb.gov.example", tmp_path=tmp_path).guard(PSB)
    assert guard.permit("psb.gov.example", 443) == "10.1.2.3"
    answers["psb.gov.example"] = "127.0.0.1"
    with pytest.raises(AdapterError, match="egress rules refuse"):
        guard.permit("psb.gov.example", 443)


def test_kinds_beyond_the_network_ones_need_the_department_entry(tmp_path):
    checker = rules(tmp_path=tmp_path, kinds=("sql",))
    checker.check_kind({"kind": "sql", "department_uscc": PSB})
    checker.check_kind({"kind": "http", "department_uscc": "11320100MB1111116K"})
    with pytest.raises(PermissionDenied, match=r"^spec\.kind: "):
        checker.check_kind({"kind": "sql", "department_uscc": "11320100MB1111116K"})
    with pytest.raises(PermissionDenied, match=r"^spec\.kind: "):
        checker.check_kind({"kind": "python", "department_uscc": PSB})


def test_the_network_kinds_list_cannot_grant_local_kinds(tmp_path):
    from domain.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_settings(EXAMPLE, data_dir=str(tmp_path), registration={"kinds": ["grpc", "sql"]})
    assert raised.value.setting == "registration.kinds"


def test_the_hubs_own_sqlite_store_is_recognized_through_any_path(tmp_path):
    checker = rules(tmp_path=tmp_path)
    store = tmp_path / "tongban.db"
    (tmp_path / "link").symlink_to(tmp_path)
    assert checker.store_problem(f"sqlite:///{store}") is not None
    assert checker.store_problem(f"sqlite:///{tmp_path / 'link' / 'tongban.db'}") is not None
    assert checker.store_problem(f"sqlite:///file:{store}?mode=ro&uri=true") is not None
    assert checker.store_problem(f"sqlite:///{tmp_path / 'other.db'}") is None
