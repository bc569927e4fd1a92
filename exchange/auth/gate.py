"""The gate every `tongban.v1` call passes: who is calling, and may it call this RPC.

Refused calls are audited (who tried what, and why it was refused) before the refusal
is answered; nothing else is written for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from domain.errors import PermissionDenied, Unauthenticated
from exchange.audit import AuditTrail
from exchange.auth.identity import CallerResolver, current_caller, set_current_caller
from exchange.auth.policy import AccessPolicy, Caller, Grant

UNIDENTIFIED = Caller(organization="?", system="unidentified")


class Gate:
    """Admits a call: identifies the caller and checks the RPC against the policy."""

    def __init__(self, resolver: CallerResolver, policy: AccessPolicy, audit: AuditTrail) -> None:
        self.resolver = resolver
        self.policy = policy
        self.audit = audit

    async def admit(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Grant:
        """Admit a gRPC call (see `admit_call`)."""
        return await self.admit_call(
            method, context.auth_context() or {}, tuple(context.invocation_metadata() or ())
        )

    async def admit_call(
        self,
        method: str,
        auth_context: Mapping[str, Iterable[bytes]],
        metadata: Sequence[tuple[str, Any]],
    ) -> Grant:
        """Set the current caller and return its grant, on any transport.

        `method` is ``tongban.v1.Service/Method``; `auth_context` holds the verified
        client certificate (``x509_pem_cert``) and `metadata` the ``authorization``
        header, as gRPC names them (the HTTP transport fills both the same way).
        Raises `Unauthenticated` or `PermissionDenied` (after auditing the refusal).
        """
        service, _, name = method.partition("/")
        try:
            caller = self.resolver.resolve(auth_context, metadata)
        except Unauthenticated as exc:
            refusal = self.audit.entry(
                UNIDENTIFIED, "AUTHENTICATE", "REFUSED", rpc=method, why=exc.message
            )
            await self.audit.record(refusal)
            raise
        set_current_caller(caller)
        try:
            return self.policy.check_rpc(caller, service, name)
        except PermissionDenied as exc:
            await self.record_denial(method, exc)
            raise

    async def record_denial(self, method: str, denial: PermissionDenied) -> None:
        """Put a refusal in the audit trail (once). Raises `StoreError`."""
        if denial.audited:
            return
        await self.audit.record(
            self.audit.entry(current_caller(), "CALL", "DENIED", rpc=method, why=denial.message)
        )
        denial.audited = True
