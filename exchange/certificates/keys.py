"""Signing keys with storage: where private keys come from, and their lifecycle.

A `KeyProvider` makes and opens private keys; what the store keeps of a key is the
provider's *material*. `PassphraseKeyProvider` keeps software keys as encrypted PKCS#8
(PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) under the configured passphrase; an HSM
binding would implement the same two methods and store a reference to the key it holds.

`KeyManager` runs the lifecycle on the stored key ring, one transaction per change, each
with its audit entry: generate (and activate) an issuer's first key, rotate (a new key
signs from a given time; the old one is retired and keeps verifying what it signed),
and mark a key compromised since a time T. The pure transitions are `signing.KeyRing`'s.
The hub root key, which signs the trust bundle and the status list, is stored the same
way under the owner ``root``.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Protocol

import structlog

from certstore.audit import AuditEntry
from certstore.certificates import (
    MATERIAL_ENCRYPTED_PKCS8,
    ROOT_OWNER,
    CertificateStore,
    CertificateWrite,
    StoredKey,
)
from domain.errors import ConfigError, FailedPrecondition, InvalidRequest, NotFound
from exchange.settings import Settings
from signing import (
    Algorithm,
    KeyMaterialError,
    KeyRing,
    KeyStatus,
    PublicKey,
    SigningKey,
    SoftwareSigningKey,
    TrustedKey,
    WrongPassphrase,
    generate,
)

log = structlog.get_logger("tongban.keys")

DEV_KEY_UNLOCK_FILE = "signing.passphrase"


class KeyProvider(Protocol):
    """Makes and opens private signing keys. `SoftwareSigningKey`s or HSM handles."""

    @property
    def material_kind(self) -> str:
        """What `create` returns as material (``pkcs8-encrypted``, or an HSM's own kind)."""
        ...

    def create(self, alg: Algorithm) -> tuple[SigningKey, str]:
        """A new key and the material to store for it (never the private key in clear).

        Raises:
            KeyMaterialError: the key could not be made.
            FailedPrecondition: the provider cannot make keys (no passphrase, no HSM).
        """
        ...

    def open(self, material: str) -> SigningKey:
        """The key that `material` (from `create`) stands for.

        Raises:
            WrongPassphrase: the material does not open with this provider's secret.
            KeyMaterialError: the material is malformed.
            FailedPrecondition: the provider cannot open keys (no passphrase, no HSM).
        """
        ...


class PassphraseKeyProvider:
    """Software keys kept as encrypted PKCS#8 PEM under one passphrase."""

    material_kind = MATERIAL_ENCRYPTED_PKCS8

    def __init__(self, passphrase: bytes) -> None:
        """Raises `InvalidRequest` for an empty passphrase."""
        if not passphrase:
            raise InvalidRequest("passphrase", "must not be empty")
        self._passphrase = passphrase

    def create(self, alg: Algorithm) -> tuple[SigningKey, str]:
        """A new software key and its encrypted PKCS#8 PEM."""
        key = generate(alg)
        return key, key.to_encrypted_pkcs8(self._passphrase).decode("ascii")

    def open(self, material: str) -> SigningKey:
        """Decrypt a PEM written by `create`.

        Raises:
            WrongPassphrase: the passphrase does not decrypt it.
            KeyMaterialError: not an encrypted PKCS#8 Ed25519 or P-256 key.
        """
        return SoftwareSigningKey.from_encrypted_pkcs8(material.encode("ascii"), self._passphrase)

    def __repr__(self) -> str:
        return "PassphraseKeyProvider(<passphrase hidden>)"


class UnavailableKeyProvider:
    """Stands in when no key source is configured: every use says what is missing."""

    material_kind = MATERIAL_ENCRYPTED_PKCS8

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def create(self, alg: Algorithm) -> tuple[SigningKey, str]:
        """Raises `FailedPrecondition` with the reason."""
        raise FailedPrecondition(self.reason)

    def open(self, material: str) -> SigningKey:
        """Raises `FailedPrecondition` with the reason."""
        raise FailedPrecondition(self.reason)


def key_passphrase(settings: Settings) -> bytes | None:
    """The passphrase of the stored private keys, or None when none is configured.

    From `signing.passphrase_env` (read when the settings were loaded) or
    `signing.passphrase_file`; with neither, dev mode uses
    `<data_dir>/keys/signing.passphrase`, generated on first use with mode 0600.

    Raises:
        ConfigError: the passphrase file cannot be read or is empty.
    """
    signing = settings.signing
    if signing.passphrase_from_env is not None:
        return signing.passphrase_from_env.get_secret_value().encode("utf-8")
    if signing.passphrase_file is not None:
        return _read_passphrase_file(signing.passphrase_file, "signing.passphrase_file")
    if settings.server.mode == "production":
        return None
    path = settings.data_dir / "keys" / DEV_KEY_UNLOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_passphrase_file(path, "signing (dev passphrase file)")
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    log.warning("dev mode: generated a signing-key passphrase", path=str(path))
    return _read_passphrase_file(path, "signing (dev passphrase file)")


def _read_passphrase_file(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes().rstrip(b"\r\n")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc}") from exc
    if not data:
        raise ConfigError(setting, f"{path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the signing passphrase file is readable by others", path=str(path))
    return data


@dataclass(frozen=True, slots=True)
class CompromiseReport:
    """What marking a key compromised did."""

    key: StoredKey
    # Stored certificates it signed at or after the compromise time: they now fail
    # KEY_VALID_AT_ISSUE and need issuing again.
    affected_certificates: int
    replacement: StoredKey | None


def _utc_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _trusted(key: StoredKey) -> TrustedKey:
    return TrustedKey(
        public_key=PublicKey.from_jwk(key.public_jwk),
        issuer_department=key.issuer_department or key.owner,
        issuer_uscc=key.owner,
        not_before=key.not_before,
        not_after=key.not_after,
        status=key.status,
        compromised_since=key.compromised_since,
    )


def key_ring(keys: list[StoredKey]) -> KeyRing:
    """The issuer keys among `keys` as a `KeyRing` (the root key is not an issuer key)."""
    return KeyRing(tuple(_trusted(k) for k in keys if not k.is_root))


class KeyManager:
    """Issuer and root keys in the store, opened through a `KeyProvider` and cached.

    Opened private keys stay in memory only; each is opened (decrypted) once.
    """

    def __init__(
        self,
        store: CertificateStore,
        provider: KeyProvider,
        *,
        algorithm: Algorithm = Algorithm.EDDSA,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_change` runs after every committed change (to drop cached bundles)."""
        self.store = store
        self.provider = provider
        self.algorithm = algorithm
        self._clock = clock
        self._on_change = on_change
        self._opened: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------

    def all(self) -> list[StoredKey]:
        """Every key, the root key included, oldest first. Raises `StoreError`."""
        return self.store.signing_keys()

    def ring(self) -> KeyRing:
        """The issuer key ring as stored. Raises `StoreError`."""
        return key_ring(self.store.signing_keys())

    def root(self) -> StoredKey | None:
        """The active root key, or None. Raises `StoreError`."""
        return next(
            (k for k in self.store.signing_keys() if k.is_root and k.status is KeyStatus.ACTIVE),
            None,
        )

    def open(self, key: StoredKey) -> SigningKey:
        """The private key of `key`, opened once and then kept in memory.

        Raises:
            WrongPassphrase, KeyMaterialError: the material does not open.
            FailedPrecondition: no key source is configured.
        """
        opened = self._opened.get(key.kid)
        if opened is not None:
            return opened
        with self._lock:
            opened = self._opened.get(key.kid)
            if opened is None:
                opened = self.provider.open(key.private_material)
                if opened.kid != key.kid:
                    raise KeyMaterialError(f"stored key {key.kid} opens as {opened.kid}")
                self._opened[key.kid] = opened
        return opened

    def warm(self) -> None:
        """Open the root key and every active issuer key now, so a wrong passphrase
        stops the hub at start rather than at its first issue.

        Raises:
            ConfigError: the passphrase does not open a stored key.
            StoreError: the database failed.
        """
        for key in self.store.signing_keys():
            if key.status is not KeyStatus.ACTIVE:
                continue
            try:
                self.open(key)
            except WrongPassphrase as exc:
                raise ConfigError(
                    "signing.passphrase", f"does not decrypt stored key {key.kid} ({key.owner})"
                ) from exc
            except FailedPrecondition:
                return

    def signing_key_in(
        self,
        write: CertificateWrite,
        issuer_uscc: str,
        at: datetime,
        alg: Algorithm | None = None,
    ) -> tuple[StoredKey, SigningKey]:
        """The issuer's key (of `alg`, when given) allowed to sign at `at`, share-locked
        in `write`'s transaction so that a rotation cannot retire it before the
        certificate commits.

        The active key, or, before a scheduled rotation takes effect, the retired key
        whose period still covers `at`.

        Raises:
            FailedPrecondition: the issuer has no key (of `alg`) that may sign at `at`.
            WrongPassphrase, KeyMaterialError: the key does not open.
        """
        keys = write.keys_of(issuer_uscc)
        usable = [
            k for k in keys if (alg is None or k.alg is alg) and _trusted(k).issue_fault(at) is None
        ]
        usable.sort(key=lambda k: (k.status is KeyStatus.ACTIVE, k.not_before), reverse=True)
        if not usable:
            of = "" if alg is None else f" {alg.value}"
            option = "" if alg is None else f" --alg {alg.value}"
            raise FailedPrecondition(
                f"issuer {issuer_uscc} has no{of} key that may sign now; "
                f"run: tongban keys generate --issuer {issuer_uscc}{option}"
            )
        return usable[0], self.open(usable[0])

    # -- lifecycle -----------------------------------------------------------------

    def generate_root(self, actor: str, alg: Algorithm | None = None) -> StoredKey:
        """Generate and activate the hub root key.

        Raises:
            FailedPrecondition: an active root key exists already.
            StoreError: the database failed.
        """
        signing_key, material = self.provider.create(alg or self.algorithm)
        now = _utc_second(self._clock())
        stored = self._stored(signing_key, material, ROOT_OWNER, None, now)
        with self.store.write() as write:
            write.lock_state()
            if any(k.is_root and k.status is KeyStatus.ACTIVE for k in write.all_keys()):
                raise FailedPrecondition("the hub has an active root key already")
            write.insert_key(stored)
            write.bump_keys_revision()
            write.append_audit([self._entry(actor, "KEY_GENERATE", stored, role="root")])
        self._remember(signing_key)
        self._on_change()
        return stored

    def generate(
        self, issuer_uscc: str, issuer_department: str, actor: str, alg: Algorithm | None = None
    ) -> StoredKey:
        """Generate an issuer's first key and activate it now.

        Raises:
            FailedPrecondition: the issuer has an active key already (rotate it instead).
            InvalidRequest: the USCC or department is malformed.
            StoreError: the database failed.
        """
        signing_key, material = self.provider.create(alg or self.algorithm)
        now = _utc_second(self._clock())
        with self.store.write() as write:
            write.lock_state()
            keys = write.all_keys()
            ring = key_ring(keys).activate(
                signing_key, issuer_department=issuer_department, issuer_uscc=issuer_uscc, at=now
            )
            stored = self._stored(signing_key, material, issuer_uscc, issuer_department, now)
            self._apply(write, keys, ring, {stored.kid: stored})
            write.append_audit([self._entry(actor, "KEY_GENERATE", stored)])
        self._remember(signing_key)
        self._on_change()
        return stored

    def rotate(
        self,
        issuer_uscc: str,
        actor: str,
        *,
        at: datetime | None = None,
        alg: Algorithm | None = None,
    ) -> tuple[StoredKey, StoredKey]:
        """A new key signs for the issuer from `at` (default now); the old one is retired
        at `at` and keeps verifying what it signed until then. Returns (new, retired).

        Raises:
            NotFound: the issuer has no active key (generate one first).
            FailedPrecondition: `at` precedes the old key's start.
            StoreError: the database failed.
        """
        signing_key, material = self.provider.create(alg or self.algorithm)
        start = _utc_second(at or self._clock())
        with self.store.write() as write:
            write.lock_state()
            keys = write.all_keys()
            ring = key_ring(keys)
            old = ring.rotation_target(issuer_uscc, signing_key.alg)
            rotated = ring.rotate(signing_key, issuer_uscc=issuer_uscc, at=start)
            stored = self._stored(signing_key, material, issuer_uscc, old.issuer_department, start)
            changed = self._apply(write, keys, rotated, {stored.kid: stored})
            write.append_audit(
                [self._entry(actor, "KEY_ROTATE", stored, retired=old.kid, at=start.isoformat())]
            )
        self._remember(signing_key)
        self._on_change()
        return stored, changed[old.kid]

    def compromise(
        self, kid: str, since: datetime, actor: str, *, replace: bool = True
    ) -> CompromiseReport:
        """Mark `kid` compromised since `since`: what it signed from then on no longer
        verifies. When it was an issuer's active key and `replace` is set, a new key is
        generated and activated now, so the issuer can keep issuing.

        Raises:
            NotFound: no issuer key `kid` (the root key cannot be marked here).
            StoreError: the database failed.
        """
        since = _utc_second(since)
        # The replacement signs with the compromised key's own algorithm.
        stored_target = self.find(kid)
        fresh = self.provider.create(stored_target.alg) if replace else None
        now = _utc_second(self._clock())
        replacement: StoredKey | None = None
        with self.store.write() as write:
            write.lock_state()
            keys = write.all_keys()
            ring = key_ring(keys)
            target = ring.get(kid)
            marked = ring.compromise(kid, since=since)
            additions: dict[str, StoredKey] = {}
            if fresh is not None and target.status is KeyStatus.ACTIVE:
                signing_key, material = fresh
                marked = marked.activate(
                    signing_key,
                    issuer_department=target.issuer_department,
                    issuer_uscc=target.issuer_uscc,
                    at=now,
                )
                replacement = self._stored(
                    signing_key, material, target.issuer_uscc, target.issuer_department, now
                )
                additions[replacement.kid] = replacement
            changed = self._apply(write, keys, marked, additions)
            affected = write.count_signed_since(kid, since)
            write.append_audit(
                [
                    self._entry(
                        actor,
                        "KEY_COMPROMISE",
                        changed[kid],
                        since=since.isoformat(),
                        affected_certificates=affected,
                        replacement=replacement.kid if replacement else None,
                    )
                ]
            )
        if replacement is not None and fresh is not None:
            self._remember(fresh[0])
        self._on_change()
        return CompromiseReport(changed[kid], affected, replacement)

    def ensure(
        self,
        issuers: Mapping[str, str],
        actor: str,
        algorithms: Mapping[str, tuple[Algorithm, ...]] | None = None,
    ) -> list[StoredKey]:
        """Generate the root key and each issuer's first key where missing (dev mode).

        `algorithms` names, per issuer USCC, the algorithms its certificate types sign
        with (default: the manager's one): one active key of each is made.
        Another node doing the same at the same moment is fine: one of them wins.

        Raises:
            StoreError: the database failed.
        """
        made: list[StoredKey] = []
        keys = self.store.signing_keys()
        if not any(k.is_root and k.status is KeyStatus.ACTIVE for k in keys):
            made.extend(self._racing(lambda: self.generate_root(actor)))
        ring = key_ring(keys)
        for uscc, department in issuers.items():
            active = ring.active_keys(uscc)
            wanted = (algorithms or {}).get(uscc) or (self.algorithm,)
            for alg in wanted:
                # A single-algorithm issuer with any active key (perhaps rotated to another
                # algorithm) is left as it is; a dual-signing one needs a key of each.
                if (len(wanted) == 1 and active) or any(k.public_key.alg is alg for k in active):
                    continue
                made.extend(self._racing(partial(self.generate, uscc, department, actor, alg)))
        for key in made:
            log.warning("generated a signing key", kid=key.kid, owner=key.owner)
        return made

    # -- helpers -------------------------------------------------------------------

    def _racing(self, make: Callable[[], StoredKey]) -> list[StoredKey]:
        try:
            return [make()]
        except FailedPrecondition:  # another node made it first
            return []

    def _apply(
        self,
        write: CertificateWrite,
        before: list[StoredKey],
        ring: KeyRing,
        additions: Mapping[str, StoredKey],
    ) -> dict[str, StoredKey]:
        """Write what changed between the stored keys and `ring`; the stored keys after."""
        previous = {k.kid: k for k in before}
        after: dict[str, StoredKey] = {}
        for trusted in ring.keys:
            old = previous.get(trusted.kid)
            if old is None:
                added = additions[trusted.kid]
                write.insert_key(added)
                after[trusted.kid] = added
                continue
            lifecycle = (trusted.status, trusted.not_after, trusted.compromised_since)
            if lifecycle != (old.status, old.not_after, old.compromised_since):
                write.update_key_lifecycle(
                    trusted.kid,
                    status=trusted.status,
                    not_after=trusted.not_after,
                    compromised_since=trusted.compromised_since,
                )
            after[trusted.kid] = StoredKey(
                kid=old.kid,
                owner=old.owner,
                alg=old.alg,
                public_jwk=old.public_jwk,
                material_kind=old.material_kind,
                private_material=old.private_material,
                status=trusted.status,
                not_before=old.not_before,
                not_after=trusted.not_after,
                compromised_since=trusted.compromised_since,
                created_at=old.created_at,
                issuer_department=old.issuer_department,
            )
        write.bump_keys_revision()
        return after

    def _stored(
        self,
        signing_key: SigningKey,
        material: str,
        owner: str,
        department: str | None,
        not_before: datetime,
    ) -> StoredKey:
        return StoredKey(
            kid=signing_key.kid,
            owner=owner,
            alg=signing_key.alg,
            public_jwk=signing_key.public_jwk(),
            material_kind=self.provider.material_kind,
            private_material=material,
            status=KeyStatus.ACTIVE,
            not_before=not_before,
            not_after=None,
            compromised_since=None,
            created_at=_utc_second(self._clock()),
            issuer_department=department,
        )

    def _remember(self, signing_key: SigningKey) -> None:
        self._opened[signing_key.kid] = signing_key

    def _entry(self, actor: str, action: str, key: StoredKey, **detail: object) -> AuditEntry:
        return AuditEntry(
            at=datetime.now(UTC),
            caller=actor,
            action=action,
            outcome="OK",
            detail={"kid": key.kid, "owner": key.owner, "alg": key.alg.value, **detail},
        )

    def find(self, kid: str) -> StoredKey:
        """The stored key `kid`.

        Raises:
            NotFound: no such key.
            StoreError: the database failed.
        """
        for key in self.store.signing_keys():
            if key.kid == kid:
                return key
        raise NotFound(f"no signing key {kid}")
