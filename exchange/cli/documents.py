"""`tongban cert render`, `cert usage-copy`, `cert holder-query`: documents and usage.

`render` writes a certificate's print-ready PDF; `usage-copy` obtains a usage copy
(加注件) for a case and use cause, and writes its watermarked PDF (and its token);
`holder-query` finds a holder's certificates in the national sharing interface's terms
(holder code, holder type code, use cause).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from domain.errors import InvalidRequest
from exchange.cli.certificates import cert_app
from exchange.cli.client import (
    DevTokenOption,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
)
from exchange.generated import certificates_pb2, certificates_pb2_grpc
from signing import parse_certificate_id

PdfOut = Annotated[Path, typer.Option("--out", "-o", help="The PDF file to write.")]


def _pdf_path(out: Path) -> Path:
    if out.suffix.lower() != ".pdf":
        raise InvalidRequest("--out", "must end in .pdf")
    return out


@cert_app.command("render")
def render(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    out: PdfOut,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Write a certificate as a print-ready PDF (QR code and signed token inside)."""
    parse_certificate_id(certificate_id)
    _pdf_path(out)
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(
        certificates_pb2_grpc.CertificateServiceStub,
        "RenderDocument",
        certificates_pb2.RenderDocumentRequest(certificate_id=certificate_id),
    )
    out.write_bytes(answer.pdf)
    typer.echo(f"wrote {out} ({len(answer.pdf)} bytes): {certificate_id}")


@cert_app.command("usage-copy")
def usage_copy(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    case_id: Annotated[str, typer.Option("--case-id", help="Your case (办件) number.")],
    use_cause: Annotated[
        str, typer.Option("--use-cause", help="用证事由: what the certificate is used for.")
    ],
    out: PdfOut,
    days: Annotated[
        int, typer.Option("--days", min=0, help="Validity in days (0: the type's, 30 by default).")
    ] = 0,
    token_out: Annotated[
        Path | None, typer.Option("--token-out", help="Also write the usage copy's token here.")
    ] = None,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Obtain a usage copy (加注件) of a certificate for one case and use cause."""
    parse_certificate_id(certificate_id)
    _pdf_path(out)
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(
        certificates_pb2_grpc.CertificateServiceStub,
        "IssueUsageCopy",
        certificates_pb2.IssueUsageCopyRequest(
            certificate_id=certificate_id,
            case_id=case_id,
            use_cause=use_cause,
            validity_days=days,
            include_pdf=True,
        ),
    )
    out.write_bytes(answer.pdf)
    if token_out is not None:
        token_out.write_text(answer.token + "\n", encoding="ascii")
    typer.echo(answer.usage_copy.stamp_text)
    typer.echo(f"wrote {out}: usage copy {answer.usage_copy.usage_copy_id}")


@cert_app.command("holder-query")
def holder_query(
    holder_code: Annotated[
        str, typer.Option("--holder-code", help="持证主体代码 (holderCode): ID number, USCC ...")
    ],
    holder_type_code: Annotated[
        str,
        typer.Option(
            "--holder-type-code",
            help="持证主体代码类型代码 (holderTypeCode): 111 ID card, 001 USCC, 002 org code.",
        ),
    ],
    use_cause: Annotated[str, typer.Option("--use-cause", help="用证事由 (useCause).")],
    case_id: Annotated[str, typer.Option("--case-id", help="Your case number.")] = "",
    type_code: Annotated[str, typer.Option("--type", help="Only this certificate type.")] = "",
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List a holder's valid certificates you may use (then: cert usage-copy ID)."""
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    table = Table(Column("id", overflow="fold"), "type", "issuer", "valid until")
    token = ""
    while True:
        answer = connection.call(
            certificates_pb2_grpc.CertificateServiceStub,
            "QueryByHolder",
            certificates_pb2.QueryByHolderRequest(
                holder_code=holder_code,
                holder_type_code=holder_type_code,
                use_cause=use_cause,
                case_id=case_id,
                certificate_type_code=type_code,
                page_token=token,
            ),
        )
        for found in answer.certificates:
            until = found.valid_until.ToJsonString() if found.HasField("valid_until") else "-"
            table.add_row(found.id, found.type_name, found.issuer.department, until)
        token = answer.next_page_token
        if not token:
            break
    Console().print(table)
