"""The one error tree of Tongban.

Every failure the project raises on purpose is a `TongbanError`. Third-party
exceptions are converted at the boundary where they arise (`... from exc`), so code
above that boundary sees only these classes. Mapping to gRPC status codes happens in
exactly one place: `exchange.status.ERROR_TABLE` (gRPC status, HTTP status, problem type).
"""

from __future__ import annotations


class TongbanError(Exception):
    """Root of every error Tongban raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(TongbanError):
    """A request field breaks a rule. Maps to INVALID_ARGUMENT with a BadRequest detail.

    `field` is the request field path (``purpose.case_id``); `rule` says what is broken.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class InvalidKey(InvalidRequest):
    """A subject key fails normalization or validation for its kind."""

    def __init__(self, kind: str, rule: str, field: str = "subject.value") -> None:
        super().__init__(field, f"{kind}: {rule}")
        self.kind = kind
        self.key_rule = rule


class NotFound(TongbanError):
    """The named object does not exist."""


class AlreadyExists(TongbanError):
    """An object with this identity exists already and may not be created twice."""


class PermissionDenied(TongbanError):
    """The caller is known but not allowed to do this.

    `audited` is set once the refusal is in the audit trail, so it is recorded once.
    """

    audited: bool = False


class Unauthenticated(TongbanError):
    """The caller could not be identified."""


class FailedPrecondition(TongbanError):
    """The system is not in a state where this operation is allowed."""


class Unimplemented(TongbanError):
    """The capability belongs to a later milestone and is not built yet."""


class AdapterError(TongbanError):
    """A department adapter failed. `retryable` marks transient failures."""

    def __init__(self, adapter_id: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"adapter {adapter_id}: {message}")
        self.adapter_id = adapter_id
        self.retryable = retryable


class VerificationError(TongbanError):
    """A certificate or signed object failed verification."""


class StoreError(TongbanError):
    """The store (database) failed or is unreachable. Maps to UNAVAILABLE."""


class Unavailable(TongbanError):
    """A check the hub must make cannot be made right now (fail closed). UNAVAILABLE."""


class ConfigError(TongbanError):
    """A configuration value is missing or invalid. `setting` names it."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{setting}: {rule}")
        self.setting = setting
        self.rule = rule


class AdapterTimeout(AdapterError):
    """A department adapter did not answer in time."""

    def __init__(self, adapter_id: str, seconds: float) -> None:
        super().__init__(adapter_id, f"no answer within {seconds:.3f}s", retryable=True)
        self.seconds = seconds
