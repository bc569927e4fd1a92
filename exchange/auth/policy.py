"""Who may do what: callers, their identities, and the access policy.

A policy names a caller (``<USCC>/<system>`` or ``<USCC>/*``) and what it may do: which
RPCs, which record types and which fields of each (everything else is removed before an
answer leaves the hub), and which reasons its lookups may give. Anything no policy
allows is denied. Verification is open to everyone; the audit service has its own rule
(an auditor role, or the data subject's own channel); the catalogue and access services
are open to every identified caller. The sharing catalogue narrows a grant further
(`exchange.sharing`): conditional record types need an approved application.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import PermissionDenied
from domain.subjects import SubjectKey

ALL = "*"
OPEN_SERVICES = frozenset({"VerificationService"})
# Open to every identified caller: a hall learns what exists and applies for it; what
# each may see or decide there is checked by the services themselves.
AUTHENTICATED_SERVICES = frozenset({"CatalogService", "AccessService"})
_CALLER = re.compile(r"^[0-9A-Z]{18}/([A-Za-z0-9_-]+|\*)$")
_RPC = re.compile(r"^(\*|[A-Za-z]+/(\*|[A-Za-z]+))$")
_CERTIFICATE_TYPE = re.compile(r"^(\*|[0-9A-Z]{1,64})$")


class PolicySettings(BaseModel):
    """One `[[policies]]` entry of the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    caller: str
    rpcs: list[str] = Field(default_factory=list)
    record_types: dict[str, list[str]] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    # Certificate types (type codes, or "*") whose certificates the caller may use:
    # obtain usage copies of and find by holder. Issuers may always use their own.
    certificate_types: list[str] = Field(default_factory=list)

    @field_validator("certificate_types")
    @classmethod
    def _certificate_type_shape(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _CERTIFICATE_TYPE.match(code):
                raise ValueError(f"{code!r} must be a certificate type code (0-9A-Z) or '*'")
        return value

    @field_validator("caller")
    @classmethod
    def _caller_shape(cls, value: str) -> str:
        if not _CALLER.match(value):
            raise ValueError("must be '<USCC>/<system>' or '<USCC>/*'")
        return value

    @field_validator("rpcs")
    @classmethod
    def _rpc_shape(cls, value: list[str]) -> list[str]:
        for rpc in value:
            if not _RPC.match(rpc):
                raise ValueError(f"{rpc!r} must be 'Service/Method', 'Service/*' or '*'")
        return value

    @field_validator("reasons")
    @classmethod
    def _reasons_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"reason pattern {pattern!r}: {exc}") from exc
        return value


@dataclass(frozen=True)
class Caller:
    """Who is calling, from its client certificate (or a dev token, or nobody in dev)."""

    organization: str
    system: str
    roles: frozenset[str] = frozenset()
    subject: SubjectKey | None = None
    # Dev mode without a token: allowed everything, and said so in the log at start.
    anonymous_dev: bool = False

    @property
    def name(self) -> str:
        return f"{self.organization}/{self.system}"

    def __str__(self) -> str:
        return "anonymous (dev mode)" if self.anonymous_dev else self.name


@dataclass(frozen=True)
class Grant:
    """What one caller may do, merged from every policy that names it."""

    rpcs: frozenset[str] = frozenset()
    record_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    reasons: tuple[re.Pattern[str], ...] = ()
    unrestricted: bool = False
    # Set by the sharing catalogue: record types kept back (with what the caller is told,
    # e.g. "apply for access to ..."), and fields removed from what is otherwise readable.
    withheld: Mapping[str, str] = field(default_factory=dict)
    withheld_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    certificate_types: frozenset[str] = frozenset()

    def allows_rpc(self, service: str, method: str) -> bool:
        return self.unrestricted or bool(
            {ALL, f"{service}/{ALL}", f"{service}/{method}"} & self.rpcs
        )

    def readable_types(self, declared: Iterable[str]) -> list[str]:
        if self.unrestricted:
            return [t for t in declared if t not in self.withheld]
        return [t for t in declared if t in self.record_fields and t not in self.withheld]

    def fields_of(self, record_type: str) -> frozenset[str] | None:
        """Fields of `record_type` the caller may read; None means all of them."""
        if self.unrestricted:
            return None
        allowed = self.record_fields.get(record_type, frozenset())
        return None if ALL in allowed else allowed

    def minimize(self, record_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """`fields` of a `record_type` record without those the caller may not read."""
        kept = minimized(fields, self.fields_of(record_type))
        for name in self.withheld_fields.get(record_type, ()):
            kept.pop(name, None)
        return kept

    def may_use_certificates_of(self, type_code: str) -> bool:
        """True when the policy lets the caller use certificates of `type_code`."""
        return self.unrestricted or bool({ALL, type_code} & self.certificate_types)

    def allows_reason(self, reason: str) -> bool:
        return self.unrestricted or not self.reasons or any(p.search(reason) for p in self.reasons)


UNRESTRICTED = Grant(unrestricted=True)


class AccessPolicy:
    """Answers what a caller may do. Default deny."""

    def __init__(self, policies: Iterable[PolicySettings]) -> None:
        self._policies = tuple(policies)

    def grant(self, caller: Caller) -> Grant:
        if caller.anonymous_dev:
            return UNRESTRICTED
        matching = [
            p for p in self._policies if p.caller in (caller.name, f"{caller.organization}/{ALL}")
        ]
        fields: dict[str, set[str]] = {}
        for policy in matching:
            for record_type, names in policy.record_types.items():
                fields.setdefault(record_type, set()).update(names)
        return Grant(
            rpcs=frozenset(rpc for p in matching for rpc in p.rpcs),
            record_fields={k: frozenset(v) for k, v in fields.items()},
            reasons=tuple(re.compile(r) for p in matching for r in p.reasons),
            certificate_types=frozenset(c for p in matching for c in p.certificate_types),
        )

    def check_rpc(self, caller: Caller, service: str, method: str) -> Grant:
        """The caller's grant; raises `PermissionDenied` when the RPC is not allowed."""
        grant = self.grant(caller)
        if service in OPEN_SERVICES | AUTHENTICATED_SERVICES or service == "AuditService":
            return grant
        if not grant.allows_rpc(service, method):
            raise PermissionDenied(f"{caller} may not call {service}/{method}")
        return grant


def minimized(fields: Mapping[str, Any], allowed: frozenset[str] | None) -> dict[str, Any]:
    """`fields` without those the caller may not read (`allowed` None: keep all)."""
    if allowed is None:
        return dict(fields)
    return {name: value for name, value in fields.items() if name in allowed}
