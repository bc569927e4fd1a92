"""Configuration: the TOML file, TONGBAN_* overrides, and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import ConfigError
from exchange.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "tongban.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tongban.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_its_adapters():
    settings = load_settings(EXAMPLE)
    assert settings.server.listen == "127.0.0.1:50051"
    assert [a.id for a in settings.adapters] == ["psb.population", "amr.business"]
    assert "population.resident" in settings.record_types


def test_defaults_need_no_file(tmp_path):
    settings = load_settings(None, data_dir=str(tmp_path))
    assert settings.database_url == f"sqlite:///{(tmp_path / 'tongban.db').resolve()}"
    assert settings.server.mode == "dev"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, '[server]\nlisten = "127.0.0.1:6000"\n[logging]\nlevel = "INFO"\n')
    monkeypatch.setenv("TONGBAN_SERVER__LISTEN", "0.0.0.0:7000")
    monkeypatch.setenv("TONGBAN_LOGGING__LEVEL", "DEBUG")
    settings = load_settings(path)
    assert settings.server.listen == "0.0.0.0:7000"
    assert settings.logging.level == "DEBUG"


def test_explicit_overrides_win_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_SERVER__LISTEN", "0.0.0.0:7000")
    settings = load_settings(None, **{"server.listen": "127.0.0.1:7001"})
    assert settings.server.listen == "127.0.0.1:7001"


BAD_CONFIGS = [
    ("port out of range", '[server]\nlisten = "127.0.0.1:70000"\n', "server.listen", "HOST:PORT"),
    ("no port", '[server]\nlisten = "localhost"\n', "server.listen", "HOST:PORT"),
    ("unknown mode", '[server]\nmode = "fast"\n', "server.mode", "'dev' or 'production'"),
    ("unknown setting", "[server]\nlisten_on = 1\n", "server.listen_on", "unknown setting"),
    (
        "negative deadline",
        "[exchange]\ndefault_deadline_seconds = -1\n",
        "exchange.default_deadline_seconds",
        "greater than 0",
    ),
    (
        "bad database url",
        '[database]\nurl = "mysql://x"\n',
        "database.url",
        "sqlite: or postgresql+psycopg:",
    ),
    ("bad record type name", "[record_types.Resident]\n", "record_types", "department.thing"),
    (
        "adapter serves undeclared type",
        '[[adapters]]\nid = "a"\nkind = "python"\ndepartment = "d"\n'
        'serves = [{ record_type = "x.y", key_kinds = ["ID_CARD"] }]\n',
        "configuration",
        "undeclared record type 'x.y'",
    ),
    (
        "adapter with unknown key kind",
        '[record_types."x.y"]\n[[adapters]]\nid = "a"\nkind = "python"\ndepartment = "d"\n'
        'serves = [{ record_type = "x.y", key_kinds = ["PASSPORT"] }]\n',
        "adapters[0].serves[0].key_kinds[0]",
        "ID_CARD",
    ),
    (
        "department uscc with bad check",
        '[record_types."x.y"]\n[[adapters]]\nid = "a"\nkind = "python"\ndepartment = "d"\n'
        'department_uscc = "91350100M000100Y44"\n'
        'serves = [{ record_type = "x.y", key_kinds = ["ID_CARD"] }]\n',
        "adapters[0].department_uscc",
        "check character",
    ),
    (
        "misspelled adapter key",
        '[record_types."x.y"]\n[[adapters]]\nid = "a"\nknd = "python"\ndepartment = "d"\n'
        'serves = [{ record_type = "x.y", key_kinds = ["ID_CARD"] }]\n',
        "adapters[0].knd",
        "unknown setting; did you mean 'kind'?",
    ),
    ("misspelled section", "[servr]\nlisten = 1\n", "servr", "did you mean 'server'?"),
    ("not toml", "[server\n", "tongban.toml", "not valid TOML"),
    (
        "production without tls",
        '[server]\nmode = "production"\n[security]\naudit_subject_key = "k"\n'
        "encrypt_records = false\n",
        "configuration",
        "production mode needs security.tls_cert_file",
    ),
    (
        "policy names an undeclared record type",
        '[[policies]]\ncaller = "91350100M000100Y43/hall"\nrecord_types = { "tax.x" = ["*"] }\n',
        "configuration",
        "undeclared record type 'tax.x'",
    ),
    (
        "policy caller shape",
        '[[policies]]\ncaller = "hall"\n',
        "policies[0].caller",
        "<USCC>/<system>",
    ),
    (
        "policy reason pattern",
        '[[policies]]\ncaller = "91350100M000100Y43/hall"\nreasons = ["("]\n',
        "policies[0].reasons",
        "reason pattern",
    ),
]


@pytest.mark.parametrize(
    ("text", "setting", "says"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_configuration_is_one_line_naming_the_setting(tmp_path, text, setting, says):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    assert raised.value.setting.endswith(setting)
    assert says in raised.value.message
    assert "\n" not in raised.value.message


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("TONGBAN_SERVER__SHUTDOWN_GRACE_SECONDS", "soon")
    with pytest.raises(ConfigError) as raised:
        load_settings(None)
    assert raised.value.setting == "server.shutdown_grace_seconds"
    assert "TONGBAN_SERVER__SHUTDOWN_GRACE_SECONDS" in raised.value.message


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("[server]\nbogus = 1\n", {}, "server.bogus: unknown setting; check its name and section"),
        (
            "",
            {"server.listen": "nowhere"},
            "server.listen: must be HOST:PORT with a port in 1..65535, got 'nowhere' "
            "(given on the command line)",
        ),
        (
            '[record_types."x.y"]\n[[adapters]]\nid = "a"\nkind = "python"\ndepartment = "d"\n'
            'department_uscc = "91350100M000100Y44"\n'
            'serves = [{ record_type = "x.y", key_kinds = ["ID_CARD"] }]\n',
            {},
            "; set it in the config file",  # no variable reaches a list entry
        ),
        (
            '[signing]\npassphrase_env = "TONGBAN_TEST_UNSET_PASSPHRASE"\n'
            '[server]\nmode = "production"\n',
            {},
            "TONGBAN_TEST_UNSET_PASSPHRASE is not set",
        ),
    ],
    ids=["unknown setting", "flag", "inside a list", "section rule"],
)
def test_each_error_says_where_the_value_came_from(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text), **overrides)
    assert raised.value.message.endswith(message)
    assert ("TONGBAN_" in raised.value.message) == ("TONGBAN_TEST" in message)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_production_example_loads_once_its_tls_material_exists(tmp_path, monkeypatch):
    from exchange.auth.ca import CertificateAuthority

    monkeypatch.setenv("TONGBAN_SIGNING_PASSPHRASE", "a long signing passphrase")
    ca = CertificateAuthority.init(tmp_path / "ca")
    server = ca.issue_server("hub", ["localhost"], tmp_path / "ca")
    settings = load_settings(
        EXAMPLE.parent / "tongban.production.toml",
        **{
            "security.tls_cert_file": str(server.certificate),
            "security.tls_key_file": str(server.private_key),
            "security.client_ca_file": str(tmp_path / "ca" / "ca.crt"),
            "security.audit_subject_key": "secret",
            "security.record_keys": {"k1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
        },
    )
    assert settings.server.mode == "production"
    assert settings.security.active_record_key == "k1"
    assert len(settings.policies) == 2
