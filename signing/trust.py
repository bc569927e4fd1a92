"""Issuer keys, their lifecycle, and the root-signed trust bundle verifiers load.

A `TrustedKey` is an issuer's public key with its issuer, the period it may sign in
(`not_before` to `not_after`) and its status: active, retired (rotated out; it still
verifies what it signed while active) or compromised since T (what it signed at or
after T no longer verifies; what it signed before still does).

`KeyRing` is the lifecycle: pure transitions (`activate`, `rotate`, `retire`,
`compromise`) that return a new ring, and `to_dict`/`from_dict` for the store.
`TrustBundle` is a JWKS (RFC 7517 §5) of those keys plus issue, refresh and expiry
times, signed by the hub root key as a JWS. Every member that RFC 7517/7518 do not
define is prefixed `tongban_`, so stock JOSE libraries read the JWKS and ignore them.

Limitation (any scheme without a trusted timestamp has it): `issued_at` is signed by
the issuer key itself, so whoever holds a compromised key can backdate a certificate
to before T. Set T to the earliest moment the key may have leaked; online
verification against the hub's own records closes the gap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
)
from signing import _root_signed
from signing.canonical import JSONObject
from signing.errors import KeyMaterialError, MalformedDocument
from signing.jws import TYP_TRUST_BUNDLE
from signing.keys import Algorithm, PublicKey, SigningKey
from signing.timestamps import format_rfc3339, parse_rfc3339, to_utc_second

_USCC_SHAPE = re.compile(r"[0-9A-HJ-NP-RTUW-Y]{18}", re.ASCII)


class KeyStatus(StrEnum):
    """Where an issuer key is in its lifecycle."""

    ACTIVE = "active"
    RETIRED = "retired"
    COMPROMISED = "compromised"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedKey:
    """An issuer public key as the trust bundle lists it.

    Invariants: a retired key has `not_after` (its retirement time); a compromised key,
    and only a compromised key, has `compromised_since`.

    Raises (on construction):
        InvalidRequest: a member breaks its rule or the invariants above.
    """

    public_key: PublicKey
    issuer_department: str
    issuer_uscc: str
    not_before: datetime
    not_after: datetime | None = None
    status: KeyStatus = KeyStatus.ACTIVE
    compromised_since: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, PublicKey):
            raise InvalidRequest("public_key", "must be a PublicKey")
        if not isinstance(self.issuer_department, str) or not self.issuer_department.strip():
            raise InvalidRequest("issuer_department", "must be a non-empty string")
        if not isinstance(self.issuer_uscc, str) or not _USCC_SHAPE.fullmatch(self.issuer_uscc):
            raise InvalidRequest("issuer_uscc", "must be 18 characters of the USCC alphabet")
        try:
            object.__setattr__(self, "status", KeyStatus(self.status))
        except ValueError:
            raise InvalidRequest("status", "must be active, retired or compromised") from None
        object.__setattr__(self, "not_before", to_utc_second(self.not_before, "not_before"))
        if self.not_after is not None:
            object.__setattr__(self, "not_after", to_utc_second(self.not_after, "not_after"))
            if self.not_after < self.not_before:
                raise InvalidRequest("not_after", "must not be before not_before")
        elif self.status is KeyStatus.RETIRED:
            raise InvalidRequest("not_after", "a retired key needs its retirement time")
        if self.compromised_since is not None:
            since = to_utc_second(self.compromised_since, "compromised_since")
            object.__setattr__(self, "compromised_since", since)
        if (self.status is KeyStatus.COMPROMISED) != (self.compromised_since is not None):
            raise InvalidRequest(
                "compromised_since", "is set exactly when the status is compromised"
            )

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self.public_key.kid

    def issue_fault(self, issued_at: datetime) -> str | None:
        """Why a certificate issued at `issued_at` cannot carry this key's signature.

        None when it can: `not_before <= issued_at <= not_after` and, for a compromised
        key, `issued_at` before the compromise.
        """
        since = self.compromised_since
        if since is not None and issued_at >= since:
            return (
                f"key {self.kid} is compromised since {format_rfc3339(since)}; "
                f"certificate issued at {format_rfc3339(issued_at)}"
            )
        if issued_at < self.not_before:
            return (
                f"certificate issued at {format_rfc3339(issued_at)}, before key "
                f"{self.kid} became valid at {format_rfc3339(self.not_before)}"
            )
        if self.not_after is not None and issued_at > self.not_after:
            ended = "was retired" if self.status is KeyStatus.RETIRED else "stopped signing"
            return (
                f"certificate issued at {format_rfc3339(issued_at)}, after key "
                f"{self.kid} {ended} at {format_rfc3339(self.not_after)}"
            )
        return None

    def to_jwk(self) -> JSONObject:
        """The public JWK with the `tongban_*` issuer, period and status members."""
        jwk: JSONObject = {
            **self.public_key.jwk(),
            "tongban_issuer": self.issuer_uscc,
            "tongban_issuer_department": self.issuer_department,
            "tongban_status": self.status.value,
            "tongban_not_before": format_rfc3339(self.not_before),
        }
        if self.not_after is not None:
            jwk["tongban_not_after"] = format_rfc3339(self.not_after)
        if self.compromised_since is not None:
            jwk["tongban_compromised_since"] = format_rfc3339(self.compromised_since)
        return jwk

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> TrustedKey:
        """Read a JWK written by `to_jwk`.

        Raises:
            KeyMaterialError: the key part is malformed (see `PublicKey.from_jwk`).
            InvalidRequest: a `tongban_*` member is missing or malformed.
        """
        status = jwk.get("tongban_status")
        if status not in {s.value for s in KeyStatus}:
            raise InvalidRequest("tongban_status", "must be active, retired or compromised")
        return cls(
            public_key=PublicKey.from_jwk(jwk),
            issuer_department=_text(jwk, "tongban_issuer_department"),
            issuer_uscc=_text(jwk, "tongban_issuer"),
            not_before=parse_rfc3339(jwk.get("tongban_not_before"), "tongban_not_before"),
            not_after=_optional_time(jwk, "tongban_not_after"),
            status=KeyStatus(str(status)),
            compromised_since=_optional_time(jwk, "tongban_compromised_since"),
        )


def _text(jwk: Mapping[str, object], name: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(name, "must be a string")
    return value


def _optional_time(jwk: Mapping[str, object], name: str) -> datetime | None:
    value = jwk.get(name)
    return None if value is None else parse_rfc3339(value, name)


def _as_public_key(key: PublicKey | SigningKey) -> PublicKey:
    return key if isinstance(key, PublicKey) else PublicKey.from_jwk(key.public_jwk())


def _keys_from_jwks(data: Mapping[str, object], kind: str) -> tuple[TrustedKey, ...]:
    entries = data.get("keys") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise MalformedDocument(f"{kind}: 'keys' must be a JSON array")
    keys = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise MalformedDocument(f"{kind}: keys[{position}] is not a JSON object")
        try:
            keys.append(TrustedKey.from_jwk(entry))
        except (KeyMaterialError, InvalidRequest) as exc:
            raise MalformedDocument(f"{kind}: keys[{position}]: {exc.message}") from None
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """All issuer keys the hub has ever trusted, with pure lifecycle transitions.

    Invariants: one entry per kid; at most one active key per issuer USCC and
    algorithm (an issuer of dual-signed certificates holds, say, an EdDSA and an SM2 key).

    Raises (on construction):
        AlreadyExists: two entries share a kid.
        FailedPrecondition: an issuer has two active keys of one algorithm.
    """

    keys: tuple[TrustedKey, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise AlreadyExists("the key ring lists a kid twice")
        active = [
            (k.issuer_uscc, k.public_key.alg) for k in self.keys if k.status is KeyStatus.ACTIVE
        ]
        if len(set(active)) != len(active):
            raise FailedPrecondition("an issuer has more than one active key of one algorithm")

    def get(self, kid: str) -> TrustedKey:
        """The entry for `kid`.

        Raises:
            NotFound: no such key.
        """
        for key in self.keys:
            if key.kid == kid:
                return key
        raise NotFound(f"no key {kid} in the key ring")

    def active_keys(self, issuer_uscc: str) -> tuple[TrustedKey, ...]:
        """The issuer's active keys, one per algorithm."""
        return tuple(
            k for k in self.keys if k.issuer_uscc == issuer_uscc and k.status is KeyStatus.ACTIVE
        )

    def active_key(self, issuer_uscc: str, alg: Algorithm | None = None) -> TrustedKey:
        """The key `issuer_uscc` signs new certificates with (for `alg`, if given).

        Raises:
            NotFound: the issuer has no active key (of `alg`).
            FailedPrecondition: no `alg` given and the issuer has active keys of two
                algorithms.
        """
        active = self.active_keys(issuer_uscc)
        if alg is not None:
            active = tuple(k for k in active if k.public_key.alg is alg)
        if not active:
            of = "" if alg is None else f" of {alg.value}"
            raise NotFound(f"issuer {issuer_uscc} has no active key{of}")
        if len(active) > 1:
            algs = ", ".join(k.public_key.alg.value for k in active)
            raise FailedPrecondition(
                f"issuer {issuer_uscc} has active keys for {algs}; name the algorithm"
            )
        return active[0]

    def rotation_target(self, issuer_uscc: str, alg: Algorithm) -> TrustedKey:
        """The key a rotation to a new `alg` key retires: the issuer's active key of
        `alg`, or its only active key when it has none of `alg`.

        Raises:
            NotFound, FailedPrecondition: as `active_key`.
        """
        same = [k for k in self.active_keys(issuer_uscc) if k.public_key.alg is alg]
        return same[0] if same else self.active_key(issuer_uscc)

    def activate(
        self,
        key: PublicKey | SigningKey,
        *,
        issuer_department: str,
        issuer_uscc: str,
        at: datetime,
        not_after: datetime | None = None,
    ) -> KeyRing:
        """Add `key` as the issuer's first active key of its algorithm, valid from `at`.

        Raises:
            AlreadyExists: the key is in the ring already.
            FailedPrecondition: the issuer has an active key of that algorithm (use `rotate`).
            InvalidRequest: a member breaks its rule.
        """
        public = _as_public_key(key)
        self._require_new(public)
        if any(k.public_key.alg is public.alg for k in self.active_keys(issuer_uscc)):
            raise FailedPrecondition(
                f"issuer {issuer_uscc} has an active {public.alg.value} key; rotate it instead"
            )
        entry = TrustedKey(
            public_key=public,
            issuer_department=issuer_department,
            issuer_uscc=issuer_uscc,
            not_before=at,
            not_after=not_after,
        )
        return KeyRing((*self.keys, entry))

    def rotate(
        self,
        key: PublicKey | SigningKey,
        *,
        issuer_uscc: str,
        at: datetime,
        not_after: datetime | None = None,
    ) -> KeyRing:
        """Make `key` the issuer's active key from `at`; retire the old one at `at`.

        The old key is the issuer's active key of `key`'s algorithm, or, when it has
        none, its only active key (a rotation that changes algorithm). The old key keeps
        verifying certificates issued up to and including `at`.

        Raises:
            NotFound: the issuer has no active key (use `activate`).
            AlreadyExists: `key` is in the ring already.
            FailedPrecondition: `at` is before the old key's `not_before`.
        """
        public = _as_public_key(key)
        old = self.rotation_target(issuer_uscc, public.alg)
        self._require_new(public)
        at = to_utc_second(at, "at")
        retired = self._retired(old, at)
        entry = TrustedKey(
            public_key=public,
            issuer_department=old.issuer_department,
            issuer_uscc=issuer_uscc,
            not_before=at,
            not_after=not_after,
        )
        return KeyRing((*(retired if k is old else k for k in self.keys), entry))

    def retire(self, kid: str, *, at: datetime) -> KeyRing:
        """Stop an active key signing from `at`, with no successor.

        Raises:
            NotFound: no such key.
            FailedPrecondition: the key is not active, or `at` precedes its `not_before`.
        """
        key = self.get(kid)
        if key.status is not KeyStatus.ACTIVE:
            raise FailedPrecondition(f"key {kid} is {key.status}, not active")
        retired = self._retired(key, to_utc_second(at, "at"))
        return KeyRing(tuple(retired if k is key else k for k in self.keys))

    def compromise(self, kid: str, *, since: datetime) -> KeyRing:
        """Mark `kid` compromised since `since`; certificates it signed from then on fail.

        Marking a key twice keeps the earlier time: the window only ever widens.

        Raises:
            NotFound: no such key.
        """
        key = self.get(kid)
        since = to_utc_second(since, "since")
        if key.compromised_since is not None:
            since = min(since, key.compromised_since)
        marked = replace(key, status=KeyStatus.COMPROMISED, compromised_since=since)
        return KeyRing(tuple(marked if k is key else k for k in self.keys))

    def bundle(
        self, *, issued_at: datetime, next_update: datetime, expires: datetime
    ) -> TrustBundle:
        """A trust bundle of every key in the ring (retired and compromised included,
        since certificates they signed earlier still verify).

        Raises:
            MalformedDocument: the times are not issued_at <= next_update <= expires.
        """
        return TrustBundle(
            keys=self.keys, issued_at=issued_at, next_update=next_update, expires=expires
        )

    def to_dict(self) -> JSONObject:
        """A JSON-compatible form for the store: `{"keys": [<JWK with tongban_*>...]}`."""
        return {"keys": [k.to_jwk() for k in self.keys]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> KeyRing:
        """Read what `to_dict` wrote.

        Raises:
            MalformedDocument: an entry is malformed.
            AlreadyExists, FailedPrecondition: the ring invariants do not hold.
        """
        return cls(_keys_from_jwks(data, "key ring"))

    def _require_new(self, public: PublicKey) -> None:
        if any(k.kid == public.kid for k in self.keys):
            raise AlreadyExists(f"key {public.kid} is in the key ring already")

    @staticmethod
    def _retired(key: TrustedKey, at: datetime) -> TrustedKey:
        if at < key.not_before:
            raise FailedPrecondition(
                f"key {key.kid} becomes valid only at {format_rfc3339(key.not_before)}"
            )
        end = at if key.not_after is None else min(key.not_after, at)
        return replace(key, status=KeyStatus.RETIRED, not_after=end)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustBundle:
    """The issuer keys a verifier trusts, as of `issued_at`, until `expires`.

    `next_update` is when a verifier should fetch a new one; past `expires` the bundle
    is refused.

    Raises (on construction):
        MalformedDocument: two keys share a kid, or the times are out of order.
    """

    keys: tuple[TrustedKey, ...]
    issued_at: datetime
    next_update: datetime
    expires: datetime
    _by_kid: Mapping[str, TrustedKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        issued_at, next_update, expires = _root_signed.check_times(
            "trust bundle", self.issued_at, self.next_update, self.expires
        )
        object.__setattr__(self, "issued_at", issued_at)
        object.__setattr__(self, "next_update", next_update)
        object.__setattr__(self, "expires", expires)
        by_kid = {k.kid: k for k in self.keys}
        if len(by_kid) != len(self.keys):
            raise MalformedDocument("trust bundle: a kid is listed twice")
        object.__setattr__(self, "_by_kid", by_kid)

    def get(self, kid: str) -> TrustedKey | None:
        """The key with this kid, or None."""
        return self._by_kid.get(kid)

    def needs_refresh(self, now: datetime) -> bool:
        """True from `next_update` on."""
        return now >= self.next_update

    def to_jwks(self) -> JSONObject:
        """The JWK Set (RFC 7517 §5) with the `tongban_*` bundle times."""
        return {
            "keys": [k.to_jwk() for k in self.keys],
            "tongban_issued_at": format_rfc3339(self.issued_at),
            "tongban_next_update": format_rfc3339(self.next_update),
            "tongban_expires": format_rfc3339(self.expires),
        }

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, object]) -> TrustBundle:
        """Read what `to_jwks` wrote (no signature involved).

        Raises:
            MalformedDocument: a member or key is malformed.
        """
        kind = "trust bundle"
        return cls(
            keys=_keys_from_jwks(jwks, kind),
            issued_at=_root_signed.read_time(jwks, "tongban_issued_at", kind),
            next_update=_root_signed.read_time(jwks, "tongban_next_update", kind),
            expires=_root_signed.read_time(jwks, "tongban_expires", kind),
        )

    def sign(self, root_key: SigningKey) -> str:
        """The bundle as a compact JWS (typ `tongban-trust-bundle+jws`) signed by the root."""
        return _root_signed.sign_document(self.to_jwks(), root_key, typ=TYP_TRUST_BUNDLE)

    @classmethod
    def load(
        cls,
        jws: str | bytes,
        root_public_jwk: PublicKey | Mapping[str, object],
        now: datetime,
        *,
        previous: TrustBundle | None = None,
    ) -> TrustBundle:
        """Verify a signed bundle against the pinned root key and return it.

        Pass the bundle already held as `previous` to refuse an older one (a replay
        that could bring back a key since marked compromised).

        Raises:
            MalformedToken: not a compact JWS of typ `tongban-trust-bundle+jws`.
            SignatureInvalid: not signed by the pinned root key.
            MalformedDocument: signed, but the content is malformed.
            DocumentExpired: `now` is at or past the bundle's `expires`.
            DocumentRollback: older than `previous`.
            KeyMaterialError: `root_public_jwk` itself is not a usable public JWK.
            InvalidRequest: `now` is not timezone-aware.
        """
        kind = "trust bundle"
        claims = _root_signed.open_document(jws, root_public_jwk, typ=TYP_TRUST_BUNDLE, kind=kind)
        bundle = cls.from_jwks(claims)
        _root_signed.check_fresh(
            kind,
            bundle.issued_at,
            bundle.expires,
            now,
            None if previous is None else previous.issued_at,
        )
        return bundle
