"""The client CA's revocation list, read fail-closed (issue 17 §4).

The list is re-read when its file changes. A file that disappears, cannot be read,
is not a PEM CRL or is not signed by the client CA never widens what is accepted:
the last good list stays in force, and the problem (with the file's path) goes to the
hub's log, never to a caller. When a CRL is configured but no good one was ever read,
every certificate is refused with UNAVAILABLE until one is.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography import x509

from domain.errors import Unavailable

log = structlog.get_logger("tongban.auth")

UNCHECKABLE = "the hub cannot check client certificates for revocation right now"

_Stamp = tuple[int, int, int]


def _issuer(path: Path | None) -> x509.Certificate | None:
    if path is None:
        return None
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        # The TLS layer refuses to start with an unreadable CA; nothing to check here.
        return None


class RevocationList:
    """Revoked serial numbers of the client CA, from `path` (None: no CRL configured).

    `issuer_file`, the client CA certificate, makes a CRL count only when the CA
    signed it: a forged or truncated list is treated like a corrupt one.
    """

    def __init__(self, path: Path | None, issuer_file: Path | None = None) -> None:
        self._path = path
        self._issuer = _issuer(issuer_file)
        self._stamp: _Stamp | None = None
        self._missing = False
        self._serials: frozenset[int] | None = None
        if path is not None:
            self._refresh(path)

    @property
    def loaded(self) -> bool:
        """True when no CRL is configured or a good one is in force."""
        return self._path is None or self._serials is not None

    def revoked(self) -> frozenset[int]:
        """The serials in force. Raises `Unavailable` when none could ever be read."""
        if self._path is None:
            return frozenset()
        self._refresh(self._path)
        if self._serials is None:
            raise Unavailable(UNCHECKABLE)
        return self._serials

    def _refresh(self, path: Path) -> None:
        try:
            status = path.stat()
        except OSError as exc:
            if not self._missing:
                self._missing = True
                log.error(
                    "CRL file cannot be read; keeping the last good list"
                    if self._serials is not None
                    else "CRL file cannot be read; refusing client certificates until it can",
                    path=str(path),
                    error=type(exc).__name__,
                )
            return
        self._missing = False
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        problem = None
        try:
            crl = x509.load_pem_x509_crl(path.read_bytes())
        except (OSError, ValueError) as exc:
            problem = f"not a PEM certificate revocation list ({type(exc).__name__})"
        else:
            if self._issuer is not None and not _signed_by(crl, self._issuer):
                problem = "not signed by the client CA"
        if problem is not None:
            log.error(
                "CRL file rejected; "
                + (
                    "keeping the last good list"
                    if self._serials is not None
                    else "refusing client certificates until a good one is there"
                ),
                path=str(path),
                problem=problem,
            )
            return
        self._serials = frozenset(entry.serial_number for entry in crl)
        log.info("CRL loaded", path=str(path), revoked=len(self._serials), pid=os.getpid())


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.issuer == issuer.subject and crl.is_signature_valid(
            issuer.public_key()  # type: ignore[arg-type]
        )
    except (TypeError, ValueError):
        return False
