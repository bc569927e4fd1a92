"""The HTTP/JSON API's route table: one line per RPC, nothing else to write.

Every route serves one ``tongban.v1`` RPC through the *same servicer method* the gRPC
server calls, so both transports share one translation (protobuf ⇄ domain objects) and
one application layer (`exchange.app`) underneath. The HTTP side adds only what HTTP
needs: the body is the proto3 JSON mapping of the RPC's request message (path and query
parameters fill fields of the same message), the answer is the proto3 JSON of its
response message, server streams are NDJSON, errors are RFC 9457 problems from
`exchange.status.ERROR_TABLE`. Identity, RPC policy and audit are the gate's, by the
same ``Service/Method`` name, so a policy written for gRPC holds for HTTP too.

Adding a route for a new RPC (for example ``CatalogService.List``):

1. define the RPC in ``proto/tongban/v1/*.proto`` and implement it in its servicer
   (``exchange/services/``) as usual: translate, call one `exchange.app` method;
2. register the servicer in `exchange.server.servicers` (gRPC and HTTP both read it);
3. add one `Route` below, e.g.
   ``Route("GET", "/catalog/{record_type}", "tongban.v1.CatalogService/Get")``:
   ``{record_type}`` fills the request field ``record_type``; on GET and DELETE the
   other fields come from query parameters (``?holder.kind=USCC`` for nested ones).

The OpenAPI document (`exchange.http.openapi`) is generated from this table and the
proto descriptors, and ``tests/unit/http/test_openapi.py`` fails when the checked-in
copy (``docs/openapi.json``) drifts: run ``make openapi`` after changing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

PREFIX: Final = "/api/v1"
PACKAGE_PREFIX: Final = "tongban.v1."

HttpMethod = Literal["GET", "POST", "DELETE"]


@dataclass(frozen=True, slots=True)
class Route:
    """`http_method` `path` (under `PREFIX`) serves `rpc` (``package.Service/Method``)."""

    http_method: HttpMethod
    path: str
    rpc: str
    summary: str = ""
    # A file download: the answer is the response's bytes field `body_field`, sent as
    # `media` (with the response's `file_name` as the download name), not JSON.
    media: str = ""
    body_field: str = ""
    # Request fields the route always sets (after parsing what the caller sent).
    fixed: tuple[tuple[str, bool], ...] = ()

    @property
    def service(self) -> str:
        return self.rpc.partition("/")[0]

    @property
    def method(self) -> str:
        return self.rpc.partition("/")[2]

    @property
    def gate_method(self) -> str:
        """The name the gate and the audit trail know the RPC by, as for gRPC calls
        (``ExchangeService/Lookup``)."""
        return self.rpc.removeprefix(PACKAGE_PREFIX)

    @property
    def operation_id(self) -> str:
        base = f"{self.service.rpartition('.')[2]}.{self.method}"
        # A download serves an RPC that also has its JSON route: a distinct id.
        return f"{base}.file" if self.media else base


ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/lookup",
        "tongban.v1.ExchangeService/Lookup",
        "Look one subject up at every source, with a purpose",
    ),
    Route(
        "POST",
        "/lookup/batch",
        "tongban.v1.ExchangeService/BatchLookup",
        "Look many subjects up; answers stream as NDJSON, each with its index",
    ),
    Route("POST", "/certificates", "tongban.v1.CertificateService/Issue", "Issue a certificate"),
    Route(
        "GET",
        "/certificates",
        "tongban.v1.CertificateService/ListByHolder",
        "List a holder's certificates, newest first (holder.kind, holder.value)",
    ),
    # Before ``/certificates/{certificate_id}``: routes match in this order.
    Route(
        "GET",
        "/certificates/{certificate_id}.pdf",
        "tongban.v1.CertificateService/RenderDocument",
        "Download the certificate as a print-ready PDF (application/pdf)",
        media="application/pdf",
        body_field="pdf",
    ),
    Route(
        "GET",
        "/certificates/{certificate_id}",
        "tongban.v1.CertificateService/Get",
        "Get a certificate with its status and token",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/supersede",
        "tongban.v1.CertificateService/Supersede",
        "Issue the next version of a certificate",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/revoke",
        "tongban.v1.CertificateService/Revoke",
        "Revoke a certificate (permanent)",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/suspend",
        "tongban.v1.CertificateService/Suspend",
        "Suspend a certificate (reversible)",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/reinstate",
        "tongban.v1.CertificateService/Reinstate",
        "Reinstate a suspended certificate",
    ),
    Route(
        "GET",
        "/certificates/{certificate_id}/document",
        "tongban.v1.CertificateService/RenderDocument",
        "The certificate as a print-ready PDF (base64 in `pdf`)",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/usage-copies",
        "tongban.v1.CertificateService/IssueUsageCopy",
        "Issue a usage copy (加注件) for a case and use cause",
    ),
    Route(
        "POST",
        "/certificates/{certificate_id}/usage-copy.pdf",
        "tongban.v1.CertificateService/IssueUsageCopy",
        "Issue a usage copy and download its watermarked PDF (application/pdf)",
        media="application/pdf",
        body_field="pdf",
        fixed=(("include_pdf", True),),
    ),
    Route(
        "GET",
        "/holder-certificates",
        "tongban.v1.CertificateService/QueryByHolder",
        "A holder's certificates in the national sharing interface's terms",
    ),
    Route(
        "POST",
        "/verify",
        "tongban.v1.VerificationService/Verify",
        "Verify a certificate presented as id, token or QR text",
    ),
    Route(
        "POST",
        "/verify/stream",
        "tongban.v1.VerificationService/VerifyStream",
        "Verify many: NDJSON requests in, NDJSON verdicts out, in order",
    ),
    Route(
        "POST",
        "/receipts/verify",
        "tongban.v1.VerificationService/VerifyReceipt",
        "Check a Lookup answer's receipt, and the answer itself when given",
    ),
    Route(
        "GET",
        "/trust-bundle",
        "tongban.v1.VerificationService/GetTrustBundle",
        "The signed trust bundle, status list and root key for offline verification",
    ),
    Route("GET", "/adapters", "tongban.v1.AdapterRegistry/List", "The adapters this hub asks"),
    Route("POST", "/adapters", "tongban.v1.AdapterRegistry/Register", "Register an adapter"),
    Route(
        "DELETE",
        "/adapters/{adapter_id}",
        "tongban.v1.AdapterRegistry/Deregister",
        "Remove a registered adapter",
    ),
    Route(
        "POST",
        "/adapters/{adapter_id}/heartbeat",
        "tongban.v1.AdapterRegistry/Heartbeat",
        "Tell the hub a registered adapter is alive",
    ),
    Route("POST", "/sync-jobs", "tongban.v1.SyncService/Start", "Start a sync job"),
    Route("GET", "/sync-jobs", "tongban.v1.SyncService/List", "List sync jobs, newest first"),
    Route("GET", "/sync-jobs/{job_id}", "tongban.v1.SyncService/Get", "Get a sync job"),
    Route(
        "GET",
        "/sync-jobs/{job_id}/progress",
        "tongban.v1.SyncService/Watch",
        "Follow a sync job's progress until it ends (NDJSON)",
    ),
    Route(
        "POST",
        "/sync-jobs/{job_id}/cancel",
        "tongban.v1.SyncService/Cancel",
        "Cancel a sync job at its next batch boundary",
    ),
    Route(
        "GET",
        "/audit/access",
        "tongban.v1.AuditService/ListAccess",
        "Who accessed a subject's data and why (subject.kind, subject.value)",
    ),
    Route(
        "GET",
        "/audit/chain",
        "tongban.v1.AuditService/VerifyChain",
        "Walk the audit chain and report whether it is intact",
    ),
    Route(
        "GET",
        "/audit/tree-head",
        "tongban.v1.AuditService/GetTreeHead",
        "The newest signed tree head of the audit log",
    ),
    Route(
        "GET",
        "/audit/consistency-proof",
        "tongban.v1.AuditService/GetConsistencyProof",
        "Proof that one tree head extends another",
    ),
    Route(
        "GET",
        "/audit/inclusion-proof",
        "tongban.v1.AuditService/GetInclusionProof",
        "Proof that an entry is in a tree head",
    ),
    Route(
        "GET",
        "/catalog",
        "tongban.v1.CatalogService/List",
        "The sharing catalogue: every record type, its owner and sharing class",
    ),
    Route(
        "GET",
        "/catalog/{record_type}",
        "tongban.v1.CatalogService/Get",
        "One catalogue entry, with how to get access to it",
    ),
    Route(
        "POST",
        "/access-applications",
        "tongban.v1.AccessService/Apply",
        "Apply for conditionally shared record types",
    ),
    Route(
        "GET",
        "/access-applications",
        "tongban.v1.AccessService/List",
        "Applications the caller made (or, as owner, must decide)",
    ),
    Route(
        "POST",
        "/access-applications/{application_id}/decide",
        "tongban.v1.AccessService/Decide",
        "Approve (possibly narrower) or reject an application (owner only)",
    ),
    Route(
        "POST",
        "/access-applications/{application_id}/withdraw",
        "tongban.v1.AccessService/Withdraw",
        "Withdraw a pending application or give up a grant (applicant only)",
    ),
    Route(
        "POST",
        "/access-applications/{application_id}/revoke",
        "tongban.v1.AccessService/Revoke",
        "End a grant (owner only)",
    ),
)
