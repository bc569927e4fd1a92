"""A small certificate authority for running the hub in secure mode (mTLS).

`tongban ca init` creates the CA; `issue-server` and `issue-client` issue certificates
under it; `revoke` adds a certificate to the CA's revocation list (CRL), which the hub
re-reads when the file changes. Production deployments may use an external CA instead:
the hub only needs the CA certificate, its own certificate and key, and optionally a
CRL, named in `[security]`.

A caller's identity is carried in its client certificate:

- subject ``organizationIdentifier`` (OID 2.5.4.97): the organization's USCC;
- subject ``CN``: the calling system's name (``hall-approval``);
- SAN URIs ``urn:tongban:role:<role>``: roles such as ``auditor``;
- SAN URI ``urn:tongban:subject:<KIND>:<value>``: the data subject a citizen-facing
  channel acts for (it may ask who accessed that subject's data).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from domain.errors import ConfigError, InvalidRequest, NotFound
from domain.subjects import KeyKind, SubjectKey, parse_key

ROLE_PREFIX = "urn:tongban:role:"
SUBJECT_PREFIX = "urn:tongban:subject:"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CRL = "crl.pem"
ISSUED = "issued.txt"
"""One line per certificate the CA issued: ``<serial> <file stem>`` (like openssl's index)."""


@dataclass(frozen=True)
class IssuedFiles:
    """Where an issued certificate and its private key were written."""

    certificate: Path
    private_key: Path
    serial: int


def _now() -> datetime:
    return datetime.now(UTC)


def _write_private(path: Path, data: bytes) -> None:
    # Private keys are readable by their owner only.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class CertificateAuthority:
    """A CA kept in a folder: ``ca.crt``, ``ca.key`` (owner-only) and ``crl.pem``."""

    def __init__(
        self, folder: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.folder = folder
        self.certificate = certificate
        self._key = key

    @classmethod
    def init(
        cls, folder: Path, name: str = "Tongban Dev CA", days: int = 3650
    ) -> CertificateAuthority:
        """Create a new CA in `folder`. Raises `ConfigError` if one is there already."""
        if (folder / CA_KEY).exists():
            raise ConfigError(str(folder), "a CA exists here already")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        _write_private(folder / CA_KEY, _key_pem(key))
        (folder / CA_CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        ca = cls(folder, certificate, key)
        ca.write_crl([])
        return ca

    @classmethod
    def load(cls, folder: Path) -> CertificateAuthority:
        """Load the CA in `folder`. Raises `NotFound` when there is none."""
        try:
            certificate = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
            key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
        except FileNotFoundError as exc:
            raise NotFound(f"no CA in {folder}; run `tongban ca init --dir {folder}`") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(str(folder / CA_KEY), "not an EC private key")
        return cls(folder, certificate, key)

    def _issue(
        self,
        subject: x509.Name,
        names: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        out: Path,
        stem: str,
        days: float,
        not_before: datetime | None = None,
    ) -> IssuedFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - timedelta(minutes=5)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        out.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _key_pem(key))
        with (self.folder / ISSUED).open("a", encoding="utf-8") as index:
            index.write(f"{serial} {stem}\n")
        return IssuedFiles(cert_path, key_path, serial)

    def issue_server(
        self, name: str, hosts: list[str], out: Path, days: float = 825
    ) -> IssuedFiles:
        """Issue the hub's (or a department service's) TLS server certificate."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return self._issue(subject, names, ExtendedKeyUsageOID.SERVER_AUTH, out, name, days)

    def issue_client(
        self,
        organization_uscc: str,
        system: str,
        out: Path,
        *,
        roles: tuple[str, ...] = (),
        subject_key: SubjectKey | None = None,
        days: float = 365,
        not_before: datetime | None = None,
    ) -> IssuedFiles:
        """Issue a caller's client certificate carrying its identity (see module doc).

        Raises `InvalidKey` when `organization_uscc` is not a valid USCC.
        """
        uscc = parse_key(KeyKind.USCC, organization_uscc).value
        if not system or not system.replace("-", "").replace("_", "").isalnum():
            raise InvalidRequest("system", "letters, digits, '-' and '_' only")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, uscc),
                x509.NameAttribute(NameOID.COMMON_NAME, system),
            ]
        )
        names: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(ROLE_PREFIX + role) for role in roles
        ]
        if subject_key is not None:
            names.append(
                x509.UniformResourceIdentifier(
                    f"{SUBJECT_PREFIX}{subject_key.kind.value}:{subject_key.value}"
                )
            )
        return self._issue(
            subject,
            names,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            out,
            f"{system}@{uscc}",
            days,
            not_before,
        )

    def revoked_serials(self) -> list[int]:
        crl = load_crl(self.folder / CRL)
        return sorted(entry.serial_number for entry in crl) if crl else []

    def issued_serials(self) -> set[int]:
        """The serials of every certificate this CA issued (from its `ISSUED` index)."""
        try:
            lines = (self.folder / ISSUED).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return set()
        return {int(line.split()[0]) for line in lines if line.strip()}

    def revoke(self, serial: int) -> None:
        """Add `serial` to the CRL (idempotent).

        Raises `NotFound` when this CA never issued a certificate with that serial: a
        mistyped serial must not look revoked while the real certificate stays valid.
        """
        if serial not in self.issued_serials():
            raise NotFound(
                f"this CA ({self.folder}) never issued a certificate with serial {serial}; "
                f"its serials are in {self.folder / ISSUED}"
            )
        self.write_crl(sorted({*self.revoked_serials(), serial}))

    def write_crl(self, serials: list[int]) -> None:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + timedelta(days=30))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        (self.folder / CRL).write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def load_crl(path: Path) -> x509.CertificateRevocationList | None:
    """The CRL at `path`, or None when there is no file. Raises `ConfigError` if unreadable."""
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigError(str(path), f"not a PEM certificate revocation list: {exc}") from exc
