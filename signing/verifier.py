"""The one certificate verifier: a trust bundle, an optional status list, six checks.

Checks run in the order a reader would: is the token well formed (INTEGRITY); does the
signature verify under the trust-bundle key its header names (SIGNATURE); is that key
the named issuer's, in an unexpired bundle (ISSUER_TRUSTED); was the key allowed to sign
when the certificate was issued (KEY_VALID_AT_ISSUE); is it revoked or suspended
(STATUS); is it valid now (VALIDITY_WINDOW). Every check is reported. A check that
needs an earlier one which failed is reported failed as "not checked: <that check>
failed", never passed; so nothing is concluded from claims whose signature did not
verify.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Protocol

from domain.errors import InvalidRequest, TongbanError, VerificationError
from signing.certificate import Certificate
from signing.errors import SignatureInvalid
from signing.jws import TYP_CERTIFICATE, CompactJWS, parse_compact, parse_header
from signing.status_list import StatusList
from signing.timestamps import format_rfc3339, to_utc_second, utc_now
from signing.trust import TrustBundle


class CheckName(StrEnum):
    """The checks of a verdict, in the order they run."""

    INTEGRITY = "INTEGRITY"
    SIGNATURE = "SIGNATURE"
    ISSUER_TRUSTED = "ISSUER_TRUSTED"
    KEY_VALID_AT_ISSUE = "KEY_VALID_AT_ISSUE"
    STATUS = "STATUS"
    VALIDITY_WINDOW = "VALIDITY_WINDOW"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome; `reason` says why it failed (or what passing means)."""

    name: CheckName
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of verifying one token: valid only if every check passed.

    `certificate` is the certificate parsed from the token whenever INTEGRITY passed.
    It is authentic only when `valid` is true; show it otherwise only as "claimed".
    """

    valid: bool
    checks: tuple[CheckResult, ...]
    certificate: Certificate | None

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The failed checks, in order."""
        return tuple(c for c in self.checks if not c.passed)

    @property
    def reasons(self) -> tuple[str, ...]:
        """`"<CHECK>: <reason>"` for every failed check."""
        return tuple(f"{c.name}: {c.reason}" for c in self.checks if not c.passed)

    def result(self, name: CheckName) -> CheckResult:
        """The result of check `name`.

        Raises:
            KeyError: the verifier did not run such a check.
        """
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """How one token of a certificate fared: its algorithm, suite, key and outcome."""

    alg: str
    suite: str  # "international" or "gm"
    kid: str
    valid: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DualVerdict:
    """The outcome for every token of one (possibly dual-signed) certificate.

    `verdict` is the first token's that verified (a verifier accepts either), else the
    primary token's; `suites` has one entry per token, in the order given.
    """

    verdict: Verdict
    suites: tuple[SuiteResult, ...]

    @property
    def valid(self) -> bool:
        """True when at least one token passed every check."""
        return any(s.valid for s in self.suites)

    @property
    def verified_suites(self) -> tuple[str, ...]:
        """`"<suite> (<alg>)"` for every token that verified."""
        return tuple(f"{s.suite} ({s.alg})" for s in self.suites if s.valid)


def suite_result(token: str, verdict: Verdict) -> SuiteResult:
    """The `SuiteResult` of `verdict`, the verdict of `token`."""
    try:
        algorithm, kid = parse_header(token, typ=TYP_CERTIFICATE)
        alg, suite = algorithm.value, algorithm.suite
    except TongbanError:
        alg, suite, kid = "unknown", "unknown", ""
    return SuiteResult(alg, suite, kid, verdict.valid, verdict.reasons)


class CertificateInvalid(VerificationError):
    """Raised by `Verifier.verify_or_raise`; `verdict` has every check's result."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__("certificate is not valid: " + "; ".join(verdict.reasons))
        self.verdict = verdict


class VerificationContext:
    """What the checks read; INTEGRITY fills in `jws` and `certificate`."""

    __slots__ = ("bundle", "certificate", "jws", "now", "status_list", "token")

    def __init__(
        self, token: str, now: datetime, bundle: TrustBundle, status_list: StatusList | None
    ) -> None:
        self.token = token
        self.now = now
        self.bundle = bundle
        self.status_list = status_list
        self.jws: CompactJWS | None = None
        self.certificate: Certificate | None = None


class Check(Protocol):
    """One check: a name, the checks it needs to have passed, and `check()`."""

    name: ClassVar[CheckName]
    requires: ClassVar[tuple[CheckName, ...]]

    def check(self, context: VerificationContext) -> CheckResult:
        """Run the check on `context`; never raise for anything a token can contain."""
        ...


def _failed(name: CheckName, reason: str) -> CheckResult:
    return CheckResult(name, False, reason)


class IntegrityCheck:
    """The token is a strict compact JWS of a well-formed certificate."""

    name: ClassVar[CheckName] = CheckName.INTEGRITY
    requires: ClassVar[tuple[CheckName, ...]] = ()
    _passed = CheckResult(name, True, "token is a well-formed certificate JWS")

    def check(self, context: VerificationContext) -> CheckResult:
        try:
            jws = parse_compact(context.token, typ=TYP_CERTIFICATE)
            # Duplicate members are not looked for here: a payload that verifies was
            # signed by a trusted issuer key, whose holder can say anything anyway, and
            # Tongban's issuers only sign RFC 8785 output. The check would cost ~2 us.
            certificate = Certificate.from_claims(jws.claims(reject_duplicates=False))
        except InvalidRequest as exc:
            return _failed(self.name, f"certificate claims: {exc.message}")
        except TongbanError as exc:
            return _failed(self.name, exc.message)
        context.jws = jws
        context.certificate = certificate
        return self._passed


class SignatureCheck:
    """The signature verifies with the bundle key the header names, for its `alg`."""

    name: ClassVar[CheckName] = CheckName.SIGNATURE
    requires: ClassVar[tuple[CheckName, ...]] = (CheckName.INTEGRITY,)
    _passed = CheckResult(name, True, "signature verifies")

    def check(self, context: VerificationContext) -> CheckResult:
        jws = context.jws
        assert jws is not None  # INTEGRITY passed
        key = context.bundle.get(jws.kid)
        if key is None:
            return _failed(self.name, f"key {jws.kid} is not in the trust bundle")
        public = key.public_key
        if public.alg is not jws.alg:
            return _failed(self.name, f"header alg {jws.alg} but key {jws.kid} is {public.alg}")
        try:
            public.verify(jws.signature, jws.signing_input)
        except SignatureInvalid as exc:
            return _failed(self.name, exc.message)
        return self._passed


class IssuerTrustedCheck:
    """The key is in an unexpired trust bundle and belongs to the issuer the certificate names."""

    name: ClassVar[CheckName] = CheckName.ISSUER_TRUSTED
    # The issuer named is a claim: it means something only once the signature verified.
    requires: ClassVar[tuple[CheckName, ...]] = (CheckName.INTEGRITY, CheckName.SIGNATURE)
    _passed = CheckResult(name, True, "key belongs to the named issuer in the trust bundle")

    def check(self, context: VerificationContext) -> CheckResult:
        jws, certificate = context.jws, context.certificate
        assert jws is not None  # INTEGRITY passed
        assert certificate is not None
        bundle = context.bundle
        if context.now >= bundle.expires:
            return _failed(
                self.name, f"trust bundle expired at {format_rfc3339(bundle.expires)}; refresh it"
            )
        key = bundle.get(jws.kid)
        assert key is not None  # SIGNATURE passed
        if key.issuer_uscc != certificate.issuer_uscc:
            return _failed(
                self.name,
                f"key {jws.kid} belongs to issuer {key.issuer_uscc}, "
                f"but the certificate names {certificate.issuer_uscc}",
            )
        return self._passed


class KeyValidAtIssueCheck:
    """The key was allowed to sign at the certificate's `issued_at` (rotation, compromise)."""

    name: ClassVar[CheckName] = CheckName.KEY_VALID_AT_ISSUE
    requires: ClassVar[tuple[CheckName, ...]] = (
        CheckName.INTEGRITY,
        CheckName.SIGNATURE,
        CheckName.ISSUER_TRUSTED,
    )
    _passed = CheckResult(name, True, "key was valid when the certificate was issued")

    def check(self, context: VerificationContext) -> CheckResult:
        jws, certificate = context.jws, context.certificate
        assert jws is not None  # INTEGRITY passed
        assert certificate is not None
        key = context.bundle.get(jws.kid)
        assert key is not None  # ISSUER_TRUSTED passed
        fault = key.issue_fault(certificate.issued_at)
        return self._passed if fault is None else _failed(self.name, fault)


class StatusCheck:
    """A current status list is loaded and neither the revocation nor the suspension bit is set."""

    name: ClassVar[CheckName] = CheckName.STATUS
    requires: ClassVar[tuple[CheckName, ...]] = (CheckName.INTEGRITY, CheckName.SIGNATURE)
    _passed = CheckResult(name, True, "neither revoked nor suspended")

    def check(self, context: VerificationContext) -> CheckResult:
        certificate = context.certificate
        assert certificate is not None  # INTEGRITY passed
        status_list = context.status_list
        if status_list is None:
            return _failed(self.name, "no status list loaded; revocation cannot be ruled out")
        if status_list.expires is not None and context.now >= status_list.expires:
            return _failed(
                self.name,
                f"status list expired at {format_rfc3339(status_list.expires)}; refresh it",
            )
        uri = certificate.status_list_uri
        if uri is not None and status_list.uri is not None and uri != status_list.uri:
            return _failed(self.name, f"certificate's status list is {uri}, not the one loaded")
        index = certificate.status_list_index
        if index >= status_list.size:
            return _failed(self.name, f"status index {index} is outside the status list")
        revoked, suspended = status_list.status(index)
        if revoked or suspended:
            # One bit stands for revoked and for superseded (replaced by a new version):
            # the list cannot say which; the hub's online answer can.
            state = " and ".join(
                word
                for word, on in (("revoked or superseded", revoked), ("suspended", suspended))
                if on
            )
            return _failed(self.name, f"certificate is {state} (status index {index})")
        return self._passed


class ValidityWindowCheck:
    """`valid_from <= now < valid_until` (RFC 7519 §4.1.4-5 semantics for nbf/exp)."""

    name: ClassVar[CheckName] = CheckName.VALIDITY_WINDOW
    requires: ClassVar[tuple[CheckName, ...]] = (CheckName.INTEGRITY, CheckName.SIGNATURE)
    _passed = CheckResult(name, True, "within its validity window")

    def check(self, context: VerificationContext) -> CheckResult:
        certificate = context.certificate
        assert certificate is not None  # INTEGRITY passed
        now = context.now
        if now < certificate.valid_from:
            return _failed(self.name, f"not valid before {format_rfc3339(certificate.valid_from)}")
        valid_until = certificate.valid_until
        if valid_until is not None and now >= valid_until:
            return _failed(self.name, f"expired at {format_rfc3339(valid_until)}")
        return self._passed


DEFAULT_CHECKS: tuple[Check, ...] = (
    IntegrityCheck(),
    SignatureCheck(),
    IssuerTrustedCheck(),
    KeyValidAtIssueCheck(),
    StatusCheck(),
    ValidityWindowCheck(),
)


class Verifier:
    """Verifies certificate tokens against one trust bundle and status list.

    Build it once per bundle: public keys are loaded when the bundle is, and reused.
    """

    __slots__ = ("_bundle", "_checks", "_clock", "_not_checked", "_status_list")

    def __init__(
        self,
        bundle: TrustBundle,
        status_list: StatusList | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        checks: Sequence[Check] = DEFAULT_CHECKS,
    ) -> None:
        """See `from_bundle`; `checks` replaces the policy (in the order given)."""
        self._bundle = bundle
        self._status_list = status_list
        self._clock = clock
        self._checks = tuple(checks)
        self._not_checked = {
            (check.name, needed): _failed(check.name, f"not checked: {needed} failed")
            for check in self._checks
            for needed in check.requires
        }

    @classmethod
    def from_bundle(
        cls,
        bundle: TrustBundle,
        status_list: StatusList | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> Verifier:
        """A verifier with the default checks.

        Without a status list, STATUS fails ("revocation cannot be ruled out").
        """
        return cls(bundle, status_list, clock=clock)

    def verify(self, token: str, *, now: datetime | None = None) -> Verdict:
        """Run every check on a compact token; never raises for a bad token.

        Raises:
            InvalidRequest: `now` is given but not timezone-aware.
        """
        now = self._clock() if now is None else to_utc_second(now, "now")
        context = VerificationContext(token, now, self._bundle, self._status_list)
        results: list[CheckResult] = []
        failed: list[CheckName] = []
        for check in self._checks:
            if failed:
                needed = next((n for n in check.requires if n in failed), None)
                if needed is not None:
                    results.append(self._not_checked[check.name, needed])
                    failed.append(check.name)
                    continue
            result = check.check(context)
            results.append(result)
            if not result.passed:
                failed.append(check.name)
        return Verdict(not failed, tuple(results), context.certificate)

    def verify_tokens(self, tokens: Sequence[str], *, now: datetime | None = None) -> DualVerdict:
        """Verify every token of one certificate (a dual-signed one carries two).

        Each token runs all six checks on its own. A token whose payload differs from the
        first token's is reported failed: both must sign the same canonical payload.

        Raises:
            InvalidRequest: no token given, or `now` is not timezone-aware.
        """
        if not tokens:
            raise InvalidRequest("tokens", "give at least one token")
        now = self._clock() if now is None else to_utc_second(now, "now")
        first_payload = tokens[0].split(".")[1] if tokens[0].count(".") == 2 else None
        verdicts: list[Verdict] = []
        suites: list[SuiteResult] = []
        for token in tokens:
            verdict = self.verify(token, now=now)
            result = suite_result(token, verdict)
            parts = token.split(".")
            if len(parts) != 3 or parts[1] != first_payload:
                reason = "INTEGRITY: does not sign the same payload as the primary token"
                verdict = Verdict(False, verdict.checks, verdict.certificate)
                result = SuiteResult(
                    result.alg, result.suite, result.kid, False, (reason, *result.reasons)
                )
            verdicts.append(verdict)
            suites.append(result)
        chosen = next((v for v in verdicts if v.valid), verdicts[0])
        return DualVerdict(chosen, tuple(suites))

    def verify_or_raise(self, token: str, *, now: datetime | None = None) -> Certificate:
        """The certificate, if every check passes.

        Raises:
            CertificateInvalid: a check failed; `.verdict` says which and why.
            InvalidRequest: `now` is given but not timezone-aware.
        """
        verdict = self.verify(token, now=now)
        if not verdict.valid:
            raise CertificateInvalid(verdict)
        assert verdict.certificate is not None
        return verdict.certificate
