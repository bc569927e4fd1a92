"""Tongban's configuration: one TOML file plus `TONGBAN_*` environment overrides.

`load_settings()` is called once by an entry point; the validated `Settings` object is
passed down from there. Nothing below the entry points reads the environment.
Environment variables use ``__`` between levels: ``TONGBAN_SERVER__LISTEN=0.0.0.0:50051``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from collections.abc import Collection
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from domain.adapter_settings import AdapterKindName, AdapterSettings
from domain.adapter_settings import RecordTypeBinding as RecordTypeBinding
from domain.crypto import CryptoSuite
from domain.errors import ConfigError, InvalidKey
from domain.field_types import FieldType
from domain.subjects import KeyKind, parse_key
from exchange.auth.policy import ALL, PolicySettings
from exchange.sync.schedule import CronSchedule, parse_utc_offset

ENV_PREFIX = "TONGBAN_"
_RECORD_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
# GB/T 36904 identifiers carry the type code as 0-9A-Z.
_CERTIFICATE_TYPE_CODE = re.compile(r"^[0-9A-Z]{1,64}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# JWS `alg` names, with "SM2" accepted as shorthand for SM3withSM2.
SigningAlgorithm = Literal["EdDSA", "ES256", "SM3withSM2", "SM2"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_listen_address(value: str) -> str:
    """Return `value` if it is ``HOST:PORT`` with a port in 1..65535; raise ValueError."""
    match = _HOST_PORT.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"must be HOST:PORT with a port in 1..65535, got {value!r}")
    return value


class ServerSettings(_Section):
    listen: str = "127.0.0.1:50051"
    mode: Literal["dev", "production"] = "dev"
    shutdown_grace_seconds: float = Field(default=10.0, gt=0, le=300)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # Processes serving `listen` together (SO_REUSEPORT); one per core uses them all.
    workers: int = Field(default=1, ge=1, le=64)

    @field_validator("listen")
    @classmethod
    def _listen_shape(cls, value: str) -> str:
        return check_listen_address(value)


class HttpSettings(_Section):
    """The hub's HTTP port: the verification page, Prometheus metrics and the HTTP/JSON API."""

    # HOST:PORT; empty turns the HTTP port off.
    listen: str | None = "127.0.0.1:8080"
    # HOST:PORT of the HTTP/JSON API (/api/v1) on a listener of its own. Unset: in dev
    # mode the API is served on `listen`; in production mode it is not served. In
    # production mode this listener is HTTPS and requires client certificates from
    # security.client_ca_file (the same identities as gRPC).
    api_listen: str | None = None

    @field_validator("listen", "api_listen")
    @classmethod
    def _listen_shape(cls, value: str | None) -> str | None:
        return check_listen_address(value) if value else None


class DatabaseSettings(_Section):
    # None means SQLite in `<data_dir>/tongban.db`, the embedded default.
    url: str | None = None
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite: or postgresql+psycopg:")
        return value


class ExchangeSettings(_Section):
    # Used when a caller sends no gRPC deadline.
    default_deadline_seconds: float = Field(default=5.0, gt=0, le=120)
    max_batch_subjects: int = Field(default=1000, ge=1, le=100_000)
    batch_concurrency: int = Field(default=8, ge=1, le=256)
    # A record fetched again unchanged is re-written to the store at most this often.
    cache_refresh_seconds: float = Field(default=30.0, ge=0, le=3600)
    # The longest max_staleness a caller may ask for; longer is INVALID_ARGUMENT.
    max_staleness_seconds: float = Field(default=366 * 86400, gt=0, le=10 * 366 * 86400)


class SecuritySettings(_Section):
    """TLS material, dev-mode identity, and the keys that protect stored data."""

    # Production: the hub's certificate and key, and the CA that issues client certificates.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    # PEM CRL of the client CA; re-read when the file changes.
    crl_file: Path | None = None
    # Dev mode: HMAC secret for dev tokens (`tongban ca dev-token`), and whether a caller
    # with no token may do everything.
    dev_token_secret: SecretStr | None = None
    dev_allow_anonymous: bool = True
    # HMAC key for the subject digests in the audit trail (shared by every node). Unset
    # in dev mode: generated once into <data_dir>/keys/audit-subject.key.
    audit_subject_key: SecretStr | None = None
    # Cached record fields sealed at rest (AES-256-GCM): keys by id (base64 of 32 bytes,
    # `tongban ca record-key` makes one) and the id new seals use. Older keys stay listed
    # until every row was re-sealed (lazily, on read). Production mode requires it unless
    # encrypt_records = false says otherwise.
    record_keys: dict[str, SecretStr] = Field(default_factory=dict)
    active_record_key: str | None = None
    encrypt_records: bool | None = None


class AuditSettings(_Section):
    """The audit log's published tree heads and the receipts on answers."""

    # The log's name in its signed tree heads (the C2SP checkpoint origin line and
    # signature key name): a schema-less URL-like name unique to this hub.
    origin: str = Field(default="tongban/audit", pattern=r"^[^\s+]{1,128}$")
    # How often a node with the root key signs a new tree head when the log grew.
    tree_head_seconds: float = Field(default=60.0, ge=1, le=86_400)
    # Every Lookup answer carries a receipt signed by the hub (off only to measure
    # what receipts cost: `make bench`).
    receipts: bool = True


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


SharingClassName = Literal["UNCONDITIONAL", "CONDITIONAL", "NOT_SHARED"]
_SHARING_RANK = {"UNCONDITIONAL": 0, "CONDITIONAL": 1, "NOT_SHARED": 2}


def _uscc_rule(value: str) -> str:
    """`value` as a normalized USCC; raises ValueError naming the rule broken."""
    try:
        return parse_key(KeyKind.USCC, value).value
    except InvalidKey as exc:
        raise ValueError(exc.key_rule) from exc


class RecordTypeSettings(_Section):
    """A record type the hub exchanges: its fields, and its sharing-catalogue entry.

    The catalogue entry (政务信息资源目录) names the owning department, the sharing class
    (无条件 / 有条件 / 不予共享 as UNCONDITIONAL / CONDITIONAL / NOT_SHARED), optional
    per-field classes, the key kinds it is found by, how often it is updated, its legal
    basis, and the other departments it names as providers. Only adapters of the owner
    or a named provider may serve it.
    """

    description: str = ""
    fields: dict[str, FieldType] = Field(default_factory=dict)
    # The catalogue entry's own code; the record type's name when unset.
    catalogue_id: str = Field(default="", max_length=64)
    owner_uscc: str = ""
    owner_department: str = ""
    sharing: SharingClassName = "UNCONDITIONAL"
    # A field more restricted than its type: CONDITIONAL or NOT_SHARED.
    field_sharing: dict[str, SharingClassName] = Field(default_factory=dict)
    key_kinds: list[KeyKind] = Field(default_factory=list)
    update_frequency: str = ""
    legal_basis: str = ""
    # USCCs of departments, besides the owner, whose adapters may serve this type.
    providers: list[str] = Field(default_factory=list)

    @field_validator("owner_uscc")
    @classmethod
    def _owner_is_uscc(cls, value: str) -> str:
        return _uscc_rule(value) if value else value

    @field_validator("providers")
    @classmethod
    def _providers_are_uscc(cls, value: list[str]) -> list[str]:
        return [_uscc_rule(v) for v in value]

    @model_validator(mode="after")
    def _entry_consistent(self) -> RecordTypeSettings:
        if self.owner_uscc and not self.owner_department:
            raise ValueError("owner_department is required with owner_uscc")
        if not self.owner_uscc and (self.owner_department or self.providers):
            raise ValueError("owner_uscc is required with owner_department or providers")
        if self.sharing != "UNCONDITIONAL" and not self.owner_uscc:
            raise ValueError(
                f"a {self.sharing} record type needs owner_uscc: its owner decides access"
            )
        for name, sharing in self.field_sharing.items():
            if self.fields and name not in self.fields:
                raise ValueError(f"field_sharing names undeclared field {name!r}")
            if _SHARING_RANK[sharing] <= _SHARING_RANK[self.sharing]:
                raise ValueError(
                    f"field_sharing.{name}: a field may only be more restricted than its "
                    f"type ({self.sharing}), got {sharing}"
                )
            if sharing == "CONDITIONAL" and not self.owner_uscc:
                raise ValueError(f"field_sharing.{name}: a CONDITIONAL field needs owner_uscc")
        return self


NETWORK_KINDS: tuple[AdapterKindName, ...] = ("grpc", "http")


class RegistrationDepartmentSettings(_Section):
    """What one department may register at run time (`AdapterRegistry.Register`)."""

    # The department's USCC, or "*" for every department (and dev-mode anonymous callers).
    uscc: str
    # Kinds beyond [registration].kinds this department may register: "sql", "file",
    # "python" reach into the hub's own machine and are never allowed by default.
    kinds: list[AdapterKindName] = Field(default_factory=list)
    # Where its registered adapters may connect: "HOST[:PORTS]" with HOST a DNS name,
    # "*.suffix", an IP address or a CIDR ("10.8.0.0/16", "[fd00::/8]:443"), PORTS one
    # port, "LOW-HIGH" or "*" (the default). Loopback, link-local, unspecified and
    # multicast addresses, and the hub's own listeners, match only an entry that names
    # such an address itself ("127.0.0.1:7001", "127.0.0.0/8:7000-7100"), never a wider
    # one ("0.0.0.0/0") or a host name; the hub's own ports need an entry naming the port.
    egress: list[str] = Field(default_factory=list)

    @field_validator("uscc")
    @classmethod
    def _uscc_or_any(cls, value: str) -> str:
        if value == "*":
            return value
        try:
            return parse_key(KeyKind.USCC, value).value
        except InvalidKey as exc:
            raise ValueError(exc.key_rule) from exc

    @field_validator("egress")
    @classmethod
    def _egress_shape(cls, value: list[str]) -> list[str]:
        from exchange.egress import parse_egress  # the rule's one home; no cycle at import

        for entry in value:
            parse_egress(entry)
        return value


class RegistrationSettings(_Section):
    """Run-time adapter registration: kinds allowed and targets reachable (issue 16 §1)."""

    # Kinds every department may register: network kinds only.
    kinds: list[AdapterKindName] = Field(default_factory=lambda: list(NETWORK_KINDS))
    departments: list[RegistrationDepartmentSettings] = Field(default_factory=list)

    @field_validator("kinds")
    @classmethod
    def _network_only(cls, value: list[AdapterKindName]) -> list[AdapterKindName]:
        local = sorted(set(value) - set(NETWORK_KINDS))
        if local:
            raise ValueError(
                f"kind {local[0]!r} reaches into the hub's machine; allow it per department "
                "in [[registration.departments]] kinds"
            )
        return value

    @model_validator(mode="after")
    def _one_entry_per_department(self) -> RegistrationSettings:
        names = [d.uscc for d in self.departments]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"department {repeated[0]!r} is listed twice")
        return self


_SCHEDULE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class SyncScheduleSettings(_Section):
    """A sync job the hub starts on a schedule: a cron expression or a fixed interval."""

    name: str
    adapter: str
    mode: Literal["full", "incremental"] = "incremental"
    # Five-field cron (``0 2 * * *``) read in `utc_offset`; or `every_seconds`.
    cron: str | None = None
    every_seconds: float | None = Field(default=None, ge=1, le=366 * 86400)
    utc_offset: str = "+08:00"
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _SCHEDULE_NAME.match(value):
            raise ValueError("lower-case letters, digits, '.', '_' and '-', at most 63 characters")
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> SyncScheduleSettings:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("set exactly one of cron and every_seconds")
        parse_utc_offset(self.utc_offset)
        if self.cron is not None:
            CronSchedule.parse(self.cron, self.utc_offset)
        return self


class SyncSettings(_Section):
    """Sync jobs: batch size, leases between nodes, retries, and schedules."""

    batch_size: int = Field(default=1000, ge=1, le=10_000)
    # A node that stops heartbeating loses its job to another node after this long.
    lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=1200)
    # How often an idle node looks for jobs to claim and schedule ticks to start.
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Jobs one node runs at once (0: the node runs none, it only schedules and answers).
    max_running_jobs: int = Field(default=2, ge=0, le=64)
    # Attempts per failure streak for transient source or store errors, with backoff.
    retry_attempts: int = Field(default=5, ge=1, le=100)
    retry_initial_seconds: float = Field(default=1.0, gt=0, le=600)
    retry_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Spare a department's system: at most this many changes read per second per job.
    max_records_per_second: float | None = Field(default=None, gt=0)
    # A schedule tick missed while no node ran (a restart) is still started this late.
    misfire_grace_seconds: float = Field(default=300.0, ge=0, le=86400)
    # How this node names itself in job records; the host name when unset.
    node_name: str | None = Field(default=None, min_length=1, max_length=100)
    schedules: list[SyncScheduleSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SyncSettings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must not be shorter than retry_initial_seconds")
        names = [schedule.name for schedule in self.schedules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"schedule name {repeated[0]!r} is used twice")
        return self


class FieldLabel(_Section):
    """How a document labels one data field: Chinese, and English beside it."""

    zh: str = Field(min_length=1)
    en: str = ""


class DocumentLayoutSettings(_Section):
    """How a certificate of one type is printed (`tongban cert render`, usage copies).

    Unset parts fall back to a sensible default: the type's name as title, the fields
    in declaration order, each labelled by its name, the holder masked.
    """

    title: str | None = None
    title_en: str = ""
    # The data fields in print order; fields not named here follow in declaration order.
    field_order: list[str] = Field(default_factory=list)
    labels: dict[str, FieldLabel] = Field(default_factory=dict)
    # Print the holder's key masked (110101********002X) rather than in full.
    mask_holder: bool = True


class CertificateTypeSettings(_Section):
    """An e-certificate type: its name, whom it names, who issues it, and what it says."""

    name: str = Field(min_length=1)
    holder_kind: KeyKind
    # The department that issues it: only this USCC may issue, supersede, revoke,
    # suspend or reinstate certificates of this type.
    issuer_uscc: str
    issuer_department: str = Field(min_length=1)
    # Required data fields and their JSON types; then the ones that may be left out.
    fields: dict[str, FieldType] = Field(min_length=1)
    optional_fields: dict[str, FieldType] = Field(default_factory=dict)
    # Validity when an issue request sets no valid_until (None: no expiry).
    validity_days: int | None = Field(default=None, ge=1, le=36_600)
    # The print layout of its documents.
    document: DocumentLayoutSettings = Field(default_factory=DocumentLayoutSettings)
    # Data fields the verification page shows (a bank clerk compares them with the
    # paper in front of them); none by default.
    verifier_fields: list[str] = Field(default_factory=list)
    # How long a usage copy (加注件) is valid at most; never beyond the certificate.
    usage_copy_validity_days: int = Field(default=30, ge=1, le=3660)
    # The algorithms its certificates are signed with: one, or two for a dual-signed type
    # (the same payload signed by the issuer's key of each; the first is the primary,
    # the one the QR code carries). None: the hub's signing algorithm.
    algorithms: list[SigningAlgorithm] | None = Field(default=None, min_length=1, max_length=2)

    @field_validator("issuer_uscc")
    @classmethod
    def _issuer_is_uscc(cls, value: str) -> str:
        try:
            return parse_key(KeyKind.USCC, value).value
        except InvalidKey as exc:
            raise ValueError(exc.key_rule) from exc

    @model_validator(mode="after")
    def _field_names(self) -> CertificateTypeSettings:
        for name in (*self.fields, *self.optional_fields):
            if not _FIELD_NAME.match(name):
                raise ValueError(f"field name {name!r}: letters, digits and '_', at most 64")
        both = sorted(set(self.fields) & set(self.optional_fields))
        if both:
            raise ValueError(f"field {both[0]!r} is both required and optional")
        declared = {*self.fields, *self.optional_fields}
        for where, names in (
            ("document.field_order", self.document.field_order),
            ("document.labels", list(self.document.labels)),
            ("verifier_fields", self.verifier_fields),
        ):
            unknown = [name for name in names if name not in declared]
            if unknown:
                raise ValueError(f"{where}: {unknown[0]!r} is not a field of this type")
        if self.algorithms is not None:
            named = [_full_alg(a) for a in self.algorithms]
            if len(set(named)) != len(named):
                raise ValueError("algorithms: a dual-signed type names two different algorithms")
        return self


def _full_alg(name: str) -> str:
    return "SM3withSM2" if name == "SM2" else name


class CryptoSettings(_Section):
    """The hub-wide crypto suite: `international` or `gm` (SM2/SM3/SM4).

    `gm`: newly generated keys are SM2 (unless `[signing] algorithm` says otherwise),
    record content hashes and the audit chain use SM3, cached fields are sealed with
    SM4-GCM. Rows keep saying which hash or cipher made them, so a store switches
    suites without rewriting what it holds.
    """

    suite: CryptoSuite = CryptoSuite.INTERNATIONAL


class SigningSettings(_Section):
    """Signing keys and what verifiers are told: trust bundle and status list timing.

    The passphrase that encrypts the private keys (PKCS#8) comes from the environment
    variable named by `passphrase_env`, read once when the settings are loaded, or from
    `passphrase_file`. With neither, dev mode generates one into
    `<data_dir>/keys/signing.passphrase` (mode 0600); production mode cannot sign.
    """

    # The algorithm of newly generated keys (None: the crypto suite's, EdDSA or SM2).
    algorithm: SigningAlgorithm | None = None
    passphrase_env: str | None = None
    passphrase_file: Path | None = None
    # Generate missing root and issuer keys at start (None: in dev mode only).
    generate_missing_keys: bool | None = None
    # Where people verify a certificate; QR codes too long for the token link here.
    public_url: str | None = None
    bundle_refresh_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    bundle_lifetime_days: float = Field(default=30.0, gt=0, le=366)
    status_refresh_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    status_lifetime_hours: float = Field(default=48.0, gt=0, le=24 * 31)
    # How often a node looks for status and key changes made by other nodes.
    poll_seconds: float = Field(default=1.0, gt=0, le=300)
    _passphrase_from_env: SecretStr | None = PrivateAttr(default=None)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return None if value is None else value.rstrip("/")

    @model_validator(mode="after")
    def _resolve_passphrase(self) -> SigningSettings:
        if self.passphrase_env is not None and self.passphrase_file is not None:
            raise ValueError("set passphrase_env or passphrase_file, not both")
        if self.bundle_refresh_hours > self.bundle_lifetime_days * 24:
            raise ValueError("bundle_refresh_hours must not exceed bundle_lifetime_days")
        if self.status_refresh_minutes > self.status_lifetime_hours * 60:
            raise ValueError("status_refresh_minutes must not exceed status_lifetime_hours")
        if self.passphrase_env is not None:
            if not _ENV_NAME.match(self.passphrase_env):
                raise ValueError("passphrase_env must be the NAME of an environment variable")
            # Read here, at load time, by the entry point: nothing below reads the environment.
            value = os.environ.get(self.passphrase_env)
            if not value:
                raise ValueError(f"the environment variable {self.passphrase_env} is not set")
            self._passphrase_from_env = SecretStr(value)
        return self

    @property
    def passphrase_from_env(self) -> SecretStr | None:
        """The passphrase read from `passphrase_env` when the settings were loaded."""
        return self._passphrase_from_env


class AccessSettings(_Section):
    """Applications for conditionally shared record types, and the grants they give."""

    # An application the owner has not answered expires after this many working days
    # (2016 rules: 10), counted in `utc_offset` from the day after submission.
    decision_working_days: int = Field(default=10, ge=1, le=250)
    utc_offset: str = "+08:00"
    # Public holidays (no working day) and make-up working days (调休, a weekend day
    # that is worked), as ISO dates; weekends are skipped otherwise.
    holidays: list[date] = Field(default_factory=list)
    working_weekend_days: list[date] = Field(default_factory=list)
    # Grant duration when an application asks for none, and the longest one allowed.
    default_grant_days: int = Field(default=365, ge=1, le=3660)
    max_grant_days: int = Field(default=1830, ge=1, le=3660)
    # How often a node checks the store for grants changed by any node: the bound on
    # how late a new or revoked grant takes effect on this node.
    grant_refresh_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator("utc_offset")
    @classmethod
    def _offset_shape(cls, value: str) -> str:
        parse_utc_offset(value)
        return value

    @model_validator(mode="after")
    def _durations(self) -> AccessSettings:
        if self.default_grant_days > self.max_grant_days:
            raise ValueError("default_grant_days must not exceed max_grant_days")
        both = sorted(set(self.holidays) & set(self.working_weekend_days))
        if both:
            raise ValueError(f"{both[0]} is both a holiday and a working weekend day")
        return self


class Settings(BaseSettings):
    """The validated configuration of one hub node."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path("data")
    server: ServerSettings = ServerSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    logging: LoggingSettings = LoggingSettings()
    security: SecuritySettings = SecuritySettings()
    audit: AuditSettings = AuditSettings()
    policies: list[PolicySettings] = Field(default_factory=list)
    record_types: dict[str, RecordTypeSettings] = Field(default_factory=dict)
    access: AccessSettings = AccessSettings()
    adapters: list[AdapterSettings] = Field(default_factory=list)
    registration: RegistrationSettings = RegistrationSettings()
    sync: SyncSettings = SyncSettings()
    signing: SigningSettings = SigningSettings()
    crypto: CryptoSettings = CryptoSettings()
    # E-certificate types by type code (the <type> of the GB/T 36904 identifier).
    certificate_types: dict[str, CertificateTypeSettings] = Field(default_factory=dict)

    @property
    def signing_algorithm(self) -> str:
        """The JWS `alg` of newly generated keys: `[signing] algorithm`, else the suite's."""
        chosen = self.signing.algorithm
        return self.crypto.suite.signing_alg if chosen is None else _full_alg(chosen)

    def type_algorithms(self, code: str) -> tuple[str, ...]:
        """The algorithms certificate type `code` is signed with, primary first."""
        declared = self.certificate_types[code].algorithms
        if declared is None:
            return (self.signing_algorithm,)
        return tuple(_full_alg(a) for a in declared)

    @field_validator("certificate_types")
    @classmethod
    def _certificate_types_consistent(
        cls, value: dict[str, CertificateTypeSettings]
    ) -> dict[str, CertificateTypeSettings]:
        departments: dict[str, str] = {}
        for code, declared in value.items():
            if not _CERTIFICATE_TYPE_CODE.match(code):
                raise ValueError(f"certificate type code {code!r}: 1-64 characters of 0-9A-Z")
            known = departments.setdefault(declared.issuer_uscc, declared.issuer_department)
            if known != declared.issuer_department:
                raise ValueError(
                    f"issuer {declared.issuer_uscc} is named both {known!r} and "
                    f"{declared.issuer_department!r}; one issuer signs with one key"
                )
        return value

    @field_validator("record_types")
    @classmethod
    def _record_type_names(
        cls, value: dict[str, RecordTypeSettings]
    ) -> dict[str, RecordTypeSettings]:
        for name in value:
            if not _RECORD_TYPE.match(name):
                raise ValueError(f"record type {name!r} must look like 'department.thing'")
        return value

    @model_validator(mode="after")
    def _adapters_consistent(self) -> Settings:
        seen: set[str] = set()
        for adapter in self.adapters:
            if adapter.id in seen:
                raise ValueError(f"adapter id {adapter.id!r} is declared twice")
            seen.add(adapter.id)
            for binding in adapter.serves:
                if binding.record_type not in self.record_types:
                    raise ValueError(
                        f"adapter {adapter.id!r} serves undeclared record type "
                        f"{binding.record_type!r}"
                    )
        return self

    @model_validator(mode="after")
    def _adapters_serve_what_they_may(self) -> Settings:
        """An adapter serves only record types its department owns or provides."""
        for index, adapter in enumerate(self.adapters):
            for position, binding in enumerate(adapter.serves):
                entry = self.record_types[binding.record_type]
                if not entry.owner_uscc:
                    continue
                if adapter.department_uscc in (entry.owner_uscc, *entry.providers):
                    continue
                who = adapter.department_uscc or "no department_uscc"
                raise ValueError(
                    f"adapters[{index}].serves[{position}].record_type: adapter "
                    f"{adapter.id!r} ({who}) may not serve {binding.record_type!r}, "
                    f"which {entry.owner_department} ({entry.owner_uscc}) owns; set the "
                    f"adapter's department_uscc, or add it to record_types."
                    f"{binding.record_type}.providers"
                )
        return self

    @model_validator(mode="after")
    def _policies_name_declared_types(self) -> Settings:
        for index, policy in enumerate(self.policies):
            for record_type in policy.record_types:
                if record_type not in self.record_types:
                    raise ValueError(
                        f"policies[{index}] names undeclared record type {record_type!r}"
                    )
            for record_type, fields in policy.record_types.items():
                declared = self.record_types[record_type].fields
                unknown = [f for f in fields if f != ALL and declared and f not in declared]
                if unknown:
                    raise ValueError(
                        f"policies[{index}] names undeclared fields {unknown} of {record_type}"
                    )
        return self

    @model_validator(mode="after")
    def _production_has_tls(self) -> Settings:
        if self.server.mode != "production":
            return self
        if self.security.audit_subject_key is None:
            raise ValueError("production mode needs security.audit_subject_key")
        if self.security.encrypt_records is not False and self.security.active_record_key is None:
            raise ValueError(
                "production mode seals cached records: set security.active_record_key and "
                "security.record_keys (or security.encrypt_records = false)"
            )
        for name in ("tls_cert_file", "tls_key_file", "client_ca_file"):
            path = getattr(self.security, name)
            if path is None:
                raise ValueError(f"production mode needs security.{name} (mTLS)")
            if not Path(path).is_file():
                raise ValueError(f"security.{name}: no such file {path}")
        return self

    @model_validator(mode="after")
    def _schedules_name_adapters(self) -> Settings:
        declared = {adapter.id for adapter in self.adapters}
        for schedule in self.sync.schedules:
            if schedule.adapter not in declared:
                raise ValueError(
                    f"sync schedule {schedule.name!r} names adapter {schedule.adapter!r}, "
                    "which is not declared in [[adapters]]"
                )
        return self

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data folder."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'tongban.db').resolve()}"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read `path` (TOML) if given, apply `TONGBAN_*` variables, validate.

    `overrides` (for example from command-line flags) win over both. Raises
    `ConfigError` naming the first bad setting in one line.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("--config", f"no such file: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    explicit: dict[str, Any] = {}
    for dotted, value in overrides.items():
        _set_dotted(explicit, dotted.split("."), value)
    try:
        return _layered(data)(**explicit)
    except ValidationError as exc:
        raise _config_error(exc, overrides.keys()) from exc


class _FileSource(PydanticBaseSettingsSource):
    """The configuration file's values, as one settings source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data


def _layered(file_data: dict[str, Any]) -> type[Settings]:
    """`Settings` whose sources are, strongest first: explicit overrides, environment, file."""

    class LayeredSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, _FileSource(settings_cls, file_data)

    return LayeredSettings


def _set_dotted(data: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _config_error(exc: ValidationError, flags: Collection[str] = ()) -> ConfigError:
    """The first error of `exc` as one line naming the setting and where to change it.

    `flags` are the dotted settings given as explicit overrides (command-line flags).
    """
    errors = exc.errors()
    # A misspelled key is both unknown and a missing required one: name the misspelling.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    message = first["msg"].removeprefix("Value error, ")
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not first["loc"]:
        # A rule across settings: its message names the settings involved.
        return ConfigError("configuration", f"{message}{extra}")
    setting = setting_path(first["loc"])
    if first["type"] == "extra_forbidden":
        known = _fields_at(first["loc"][:-1])
        close = difflib.get_close_matches(str(first["loc"][-1]), sorted(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "check its name and section"
        return ConfigError(setting, f"unknown setting; {hint}{extra}")
    if setting in flags:
        return ConfigError(setting, f"{message}{extra} (given on the command line)")
    kind = _setting_kind(first["loc"])
    if kind == "section":  # a rule of the section: its message says what to do
        return ConfigError(setting, f"{message}{extra}")
    where = "the config file"
    if kind == "value":
        where += " or " + ENV_PREFIX + "__".join(str(p) for p in first["loc"]).upper()
    return ConfigError(setting, f"{message}{extra}; set it in {where}")


def setting_path(loc: Collection[int | str]) -> str:
    """A setting's path as people write it: ``adapters[2].options.base_url``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _fields_at(loc: tuple[int | str, ...]) -> set[str]:
    """The setting names the model at `loc` knows (empty when `loc` is no model)."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(model)
            model = args[0] if args else None
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return set()
        model = fields[part].annotation
    fields = getattr(model, "model_fields", None) or {}
    return {field.alias or name for name, field in fields.items()}


def _setting_kind(loc: tuple[int | str, ...]) -> Literal["value", "section", "listed"]:
    """What `loc` names: one value a ``TONGBAN_*`` variable can set, a whole section, or
    something inside a list or table (variables have no positions or keys)."""
    model: type[BaseModel] = Settings
    for position, part in enumerate(loc):
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return "listed"
        annotation = field.annotation
        section = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if position == len(loc) - 1:
            return "value" if section is None else "section"
        if section is None:
            return "listed"
        model = section
    return "listed"
