"""Signing keys with storage: encrypted at rest, generated, rotated and compromised."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cert_testkit import AMR, LICENCE, SUITES, all_tokens, licence_request, settings_for

from certstore.audit import AuditLog
from certstore.database import Database
from domain.errors import ConfigError, FailedPrecondition
from exchange.audit import AuditTrail
from exchange.auth.policy import Caller
from exchange.certificates.keys import DEV_KEY_UNLOCK_FILE, PassphraseKeyProvider
from exchange.certificates.library import CertificateLibrary
from exchange.settings import Settings
from signing import Algorithm, KeyStatus, SoftwareSigningKey, WrongPassphrase

ANONYMOUS = Caller(organization="", system="anonymous", anonymous_dev=True)


class Clock:
    """A clock the test moves; starts at the current second."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def open_library(
    settings: Settings, database: Database, clock: Callable[[], datetime] | None = None
) -> CertificateLibrary:
    audit = AuditTrail(AuditLog(database), b"test-audit-key")
    if clock is None:
        return CertificateLibrary.open(settings, database, audit)
    return CertificateLibrary.open(settings, database, audit, clock=clock)


def stored_materials(database: Database) -> list[tuple[str, str, str]]:
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT kid, material_kind, private_material FROM signing_keys")
        )
        return [(kid, kind, material) for kid, kind, material in rows]


def test_private_keys_are_stored_only_as_encrypted_pkcs8(
    library: CertificateLibrary, database: Database, cert_settings: Settings
) -> None:
    materials = stored_materials(database)
    assert len(materials) == 3  # the root key and one key per issuer (AMR, PSB)
    passphrase = (cert_settings.data_dir / "keys" / DEV_KEY_UNLOCK_FILE).read_bytes().strip()
    for kid, kind, material in materials:
        assert kind == "pkcs8-encrypted"
        assert material.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert SoftwareSigningKey.from_encrypted_pkcs8(material.encode(), passphrase).kid == kid
        with pytest.raises(WrongPassphrase):
            SoftwareSigningKey.from_encrypted_pkcs8(material.encode(), b"not the passphrase")


def test_the_database_refuses_a_clear_private_key(
    library: CertificateLibrary, database: Database
) -> None:
    clear = SoftwareSigningKey.__module__  # any text that is not an encrypted PEM
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE signing_keys SET private_material = :clear "
                "WHERE material_kind = 'pkcs8-encrypted'"
            ),
            {"clear": f"-----BEGIN PRIVATE KEY-----\n{clear}\n-----END PRIVATE KEY-----"},
        )


def test_the_dev_passphrase_file_is_private_to_its_owner(
    library: CertificateLibrary, cert_settings: Settings
) -> None:
    assert library.signing_problem() is None
    path = cert_settings.data_dir / "keys" / DEV_KEY_UNLOCK_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_wrong_passphrase_stops_the_library_at_start(
    library: CertificateLibrary, database: Database, cert_settings: Settings
) -> None:
    (cert_settings.data_dir / "keys" / DEV_KEY_UNLOCK_FILE).write_text("changed\n")
    with pytest.raises(ConfigError) as raised:
        open_library(cert_settings, database)
    assert "does not decrypt" in raised.value.message


def test_the_passphrase_comes_from_the_environment_variable_named(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_TONGBAN_KEY_PASSPHRASE", "correct horse battery staple")
    settings = settings_for(
        database_url, tmp_path, **{"signing.passphrase_env": "TEST_TONGBAN_KEY_PASSPHRASE"}
    )
    from certstore import migrate

    migrate.upgrade(database_url)
    database = Database.from_url(database_url)
    try:
        open_library(settings, database)
        for _, _, material in stored_materials(database):
            PassphraseKeyProvider(b"correct horse battery staple").open(material)
        assert not (tmp_path / "keys" / DEV_KEY_UNLOCK_FILE).exists()
    finally:
        database.dispose()


def test_the_environment_variable_must_be_set(tmp_path: Path) -> None:
    os.environ.pop("TEST_TONGBAN_UNSET_PASSPHRASE", None)
    with pytest.raises(ConfigError) as raised:
        settings_for(
            "sqlite:///x.db",
            tmp_path,
            **{"signing.passphrase_env": "TEST_TONGBAN_UNSET_PASSPHRASE"},
        )
    assert "TEST_TONGBAN_UNSET_PASSPHRASE" in raised.value.message


def test_production_without_a_passphrase_cannot_sign(
    database: Database, cert_settings: Settings
) -> None:
    production = cert_settings.model_copy(
        update={"server": cert_settings.server.model_copy(update={"mode": "production"})}
    )
    library = open_library(production, database)
    assert library.keys.all() == []
    assert "passphrase" in (library.signing_problem() or "")
    with pytest.raises(FailedPrecondition) as raised:
        library.lifecycle.issue(licence_request(), ANONYMOUS)
    assert "no key that may sign" in raised.value.message
    with pytest.raises(FailedPrecondition):
        library.trust.current().require_signed()
    with pytest.raises(FailedPrecondition) as refused:
        library.keys.generate_root("test")
    assert "passphrase" in refused.value.message


def test_opening_again_generates_nothing(
    library: CertificateLibrary, database: Database, cert_settings: Settings
) -> None:
    before = [k.kid for k in library.keys.all()]
    again = open_library(cert_settings, database)
    assert [k.kid for k in again.keys.all()] == before


@dataclass(frozen=True)
class KeyCase:
    """Certificates issued at hours 0 and 2; a key event at hour 1 (or as given)."""

    name: str
    event: str  # "rotate", "rotate-later", "compromise-before", "compromise-after"
    early_valid: bool
    late_valid: bool
    early_failure: str | None = None


KEY_CASES = [
    KeyCase("rotation keeps old certificates valid", "rotate", True, True),
    KeyCase("scheduled rotation: the old key signs until then", "rotate-later", True, True),
    KeyCase(
        "compromised since hour 1: later signatures fail, earlier ones hold",
        "compromise-at-1",
        True,
        True,  # the late one is signed by the replacement key
    ),
    KeyCase(
        "compromised since before the first issue: everything it signed fails",
        "compromise-at-0",
        False,
        True,
        "KEY_VALID_AT_ISSUE",
    ),
]


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
@pytest.mark.parametrize("case", KEY_CASES, ids=[c.name for c in KEY_CASES])
def test_key_lifecycle_table(case: KeyCase, database: Database, cert_settings: Settings) -> None:
    """The key events act on the primary key; a dual-signed certificate's second token
    (signed by the issuer's SM2 key, untouched) keeps verifying throughout."""
    clock = Clock()
    library = open_library(cert_settings, database, clock)
    primary = Algorithm(cert_settings.type_algorithms(LICENCE)[0])
    first_key = library.keys.ring().active_key(AMR, primary).kid
    assert library.keys.find(first_key).alg is primary
    start = clock.advance(minutes=1)
    early = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate
    clock.advance(hours=1)

    if case.event == "rotate":
        _, retired = library.keys.rotate(AMR, "test", alg=primary)
        assert retired.kid == first_key
        assert retired.status is KeyStatus.RETIRED
    elif case.event == "rotate-later":
        library.keys.rotate(AMR, "test", at=start + timedelta(hours=3), alg=primary)
    elif case.event == "compromise-at-1":
        report = library.keys.compromise(first_key, clock.now, "test")
        assert report.affected_certificates == 0
        assert report.replacement is not None
    else:
        report = library.keys.compromise(first_key, start, "test")
        assert report.affected_certificates == 1
    clock.advance(hours=1)
    late = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate

    verifier = library.trust.current().verifier
    early_verdict = verifier.verify(early.token)
    late_verdict = verifier.verify(late.token)
    assert early_verdict.valid is case.early_valid, early_verdict.reasons
    assert late_verdict.valid is case.late_valid, late_verdict.reasons
    if case.early_failure:
        assert [c.name.value for c in early_verdict.failures] == [case.early_failure]
    assert early.kid == first_key
    expected_late_kid = first_key if case.event == "rotate-later" else late.kid
    assert late.kid == expected_late_kid
    if case.event != "rotate-later":
        assert late.kid != first_key
    bundle_kids = {k.kid for k in library.trust.current().bundle.keys}
    assert {early.kid, late.kid} <= bundle_kids
    assert AuditLog(database).verify().intact
    # Under the GM suite the audit tree is SM3 (and the root key signs with SM2).
    assert AuditLog(database).state().hash_name == cert_settings.crypto.suite.hash_alg.value
    for token in (*all_tokens(early)[1:], *all_tokens(late)[1:]):
        assert verifier.verify(token).valid
    if len(all_tokens(early)) > 1:
        # Either token is accepted: the dual-signed certificate stays valid by SM2.
        assert verifier.verify_tokens(all_tokens(early)).valid
        assert early.second_kid is not None
        assert library.keys.find(early.second_kid).alg is Algorithm.SM2


def test_rotation_needs_an_active_key_and_generation_refuses_a_second_one(
    library: CertificateLibrary,
) -> None:
    from domain.errors import NotFound

    with pytest.raises(FailedPrecondition):
        library.keys.generate(AMR, "南京市市场监督管理局", "test")
    with pytest.raises(NotFound):
        library.keys.rotate("91320102MA1UXW2B65", "test")
    with pytest.raises(FailedPrecondition):
        library.keys.generate_root("test")
