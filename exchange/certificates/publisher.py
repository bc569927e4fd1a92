"""What the hub publishes for verifiers: the signed trust bundle and status list.

Both are built from the store and signed by the hub root key, then kept in memory with
the `Verifier` the hub itself uses online. A cached copy is used until the store says
that keys or statuses changed (the revisions of the state row, looked at no more than
every `poll` seconds, and at once after a change made on this node), or until half
its refresh interval has passed, when it is signed again with fresh times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from certstore.certificates import CertificateStatus, CertificateStore, StoredKey
from domain.errors import FailedPrecondition
from exchange.certificates.keys import KeyManager, key_ring
from exchange.settings import SigningSettings
from signing import MIN_ENTRIES, KeyStatus, StatusList, StatusPurpose, TrustBundle, Verifier
from signing.status_list import MAX_ENTRIES

_PURPOSES = {
    CertificateStatus.REVOKED: StatusPurpose.REVOCATION,
    # A superseded certificate is no longer in force: its revocation bit is set too.
    CertificateStatus.SUPERSEDED: StatusPurpose.REVOCATION,
    CertificateStatus.SUSPENDED: StatusPurpose.SUSPENSION,
}


def status_list_size(entries_used: int) -> int:
    """The smallest power of two that holds `entries_used`, and at least 131,072."""
    size = MIN_ENTRIES
    while size < entries_used:
        size *= 2
    return size


@dataclass(frozen=True, slots=True)
class TrustTiming:
    """How long published documents are fresh, and how often other nodes are looked at."""

    bundle_refresh: timedelta = timedelta(hours=24)
    bundle_lifetime: timedelta = timedelta(days=30)
    status_refresh: timedelta = timedelta(minutes=15)
    status_lifetime: timedelta = timedelta(hours=48)
    poll_seconds: float = 1.0

    @classmethod
    def from_settings(cls, signing: SigningSettings) -> TrustTiming:
        """The timing configured in `[signing]`."""
        return cls(
            bundle_refresh=timedelta(hours=signing.bundle_refresh_hours),
            bundle_lifetime=timedelta(days=signing.bundle_lifetime_days),
            status_refresh=timedelta(minutes=signing.status_refresh_minutes),
            status_lifetime=timedelta(hours=signing.status_lifetime_hours),
            poll_seconds=signing.poll_seconds,
        )


@dataclass(frozen=True, slots=True)
class PublishedTrust:
    """The documents handed to verifiers, and the verifier the hub uses online."""

    bundle: TrustBundle
    status_list: StatusList
    verifier: Verifier
    # None until the hub has a root key: then nothing can be published.
    root_jwk: dict[str, str] | None
    bundle_token: str | None
    status_token: str | None
    keys_revision: int
    status_revision: int
    status_size: int

    @property
    def next_update(self) -> datetime:
        """When a verifier should fetch both again."""
        status_next = self.status_list.next_update or self.bundle.next_update
        return min(self.bundle.next_update, status_next)

    def require_signed(self) -> tuple[str, str, dict[str, str]]:
        """(bundle JWS, status list JWS, root JWK).

        Raises:
            FailedPrecondition: the hub has no root key yet.
        """
        if self.bundle_token is None or self.status_token is None or self.root_jwk is None:
            raise FailedPrecondition(
                "the hub has no root key, so it cannot sign a trust bundle; "
                "run: tongban keys generate --root"
            )
        return self.bundle_token, self.status_token, self.root_jwk


class TrustPublisher:
    """Builds, signs and caches the trust bundle, the status list and the online verifier.

    Thread-safe: callers on worker threads share one cached copy.
    """

    def __init__(
        self,
        store: CertificateStore,
        keys: KeyManager,
        timing: TrustTiming,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._keys = keys
        self._timing = timing
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._published: PublishedTrust | None = None
        self._checked_at = float("-inf")

    def invalidate(self) -> None:
        """Look at the store again on the next use (after a change on this node)."""
        self._checked_at = float("-inf")

    def cached(self) -> PublishedTrust | None:
        """The cached copy when no look at the store is due; None otherwise. No I/O."""
        published = self._published
        if published is None or self._monotonic() - self._checked_at >= self._timing.poll_seconds:
            return None
        if self._due(published, self._clock()):
            return None
        return published

    def current(self) -> PublishedTrust:
        """The current documents and verifier, rebuilt from the store where stale.

        Raises:
            StoreError: the database failed.
            WrongPassphrase, KeyMaterialError: the root key does not open.
        """
        cached = self.cached()
        if cached is not None:
            return cached
        with self._lock:
            cached = self.cached()
            if cached is not None:
                return cached
            checked_at = self._monotonic()
            state = self._store.state()
            now = self._clock().astimezone(UTC).replace(microsecond=0)
            previous = self._published
            size = status_list_size(state.next_status_index)
            keys_stale = (
                previous is None
                or previous.keys_revision != state.keys_revision
                or now >= _half_way(previous.bundle.issued_at, previous.bundle.next_update)
            )
            status_stale = (
                keys_stale
                or previous is None
                or previous.status_revision != state.status_revision
                or previous.status_size != size
                or now
                >= _half_way(previous.status_list.issued_at, previous.status_list.next_update)
            )
            if previous is not None and not status_stale:
                self._checked_at = checked_at
                return previous
            keys = self._keys.all()
            root = next((k for k in keys if k.is_root and k.status is KeyStatus.ACTIVE), None)
            bundle, bundle_token = (
                self._bundle(keys, root, now)
                if keys_stale or previous is None
                else (previous.bundle, previous.bundle_token)
            )
            status_list, status_token = self._status_list(size, state.status_list_uri, root, now)
            published = PublishedTrust(
                bundle=bundle,
                status_list=status_list,
                verifier=Verifier.from_bundle(bundle, status_list, clock=self._clock),
                root_jwk=None if root is None else dict(root.public_jwk),
                bundle_token=bundle_token,
                status_token=status_token,
                keys_revision=state.keys_revision,
                status_revision=state.status_revision,
                status_size=size,
            )
            self._published = published
            self._checked_at = checked_at
            return published

    def _due(self, published: PublishedTrust, now: datetime) -> bool:
        return now >= _half_way(
            published.bundle.issued_at, published.bundle.next_update
        ) or now >= _half_way(published.status_list.issued_at, published.status_list.next_update)

    def _bundle(
        self, keys: list[StoredKey], root: StoredKey | None, now: datetime
    ) -> tuple[TrustBundle, str | None]:
        timing = self._timing
        bundle = key_ring(keys).bundle(
            issued_at=now,
            next_update=now + timing.bundle_refresh,
            expires=now + timing.bundle_lifetime,
        )
        if root is None:
            return bundle, None
        return bundle, bundle.sign(self._keys.open(root))

    def _status_list(
        self, size: int, uri: str | None, root: StoredKey | None, now: datetime
    ) -> tuple[StatusList, str | None]:
        timing = self._timing
        status_list = StatusList(min(size, MAX_ENTRIES), uri=uri)
        for index, status in self._store.status_entries():
            status_list.set(index, _PURPOSES[status])
        next_update, expires = now + timing.status_refresh, now + timing.status_lifetime
        # The times a loaded (signed) list would carry, so the online STATUS check
        # treats this list exactly as a verifier treats the published one.
        status_list.issued_at, status_list.next_update, status_list.expires = (
            now,
            next_update,
            expires,
        )
        if root is None:
            return status_list, None
        token = status_list.sign(
            self._keys.open(root), issued_at=now, next_update=next_update, expires=expires
        )
        return status_list, token


def _half_way(start: datetime | None, end: datetime | None) -> datetime:
    if start is None or end is None:
        return datetime.min.replace(tzinfo=UTC)
    return start + (end - start) / 2
