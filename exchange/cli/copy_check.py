"""What `tongban verify` does with PDF files and usage copies (加注件).

A Tongban PDF embeds its tokens; a usage copy is checked with the pinned root key and
then its certificate with the trust bundle, offline, or by the hub with `--hub`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from exchange.certificates.documents import EmbeddedTokens, embedded_tokens, is_pdf
from exchange.generated import verification_pb2
from signing import PublicKey, Verifier
from signing.usage_copy import UsageCopyVerdict, verify_usage_copy


def read_document(path_text: str) -> EmbeddedTokens | None:
    """The tokens a PDF file embeds, or None when `path_text` names no PDF file.

    Raises:
        InvalidRequest: a PDF without Tongban tokens, or unreadable.
    """
    path = Path(path_text)
    try:
        if not path.is_file():
            return None
        data = path.read_bytes()
    except OSError:  # a long token is not a file name
        return None
    return embedded_tokens(data) if is_pdf(data) else None


def verify_copy_offline(
    token: str,
    certificate_token: str | None,
    root_jwk: dict[str, Any],
    verifier: Verifier,
    now: datetime,
) -> UsageCopyVerdict:
    """Verify a usage copy with the pinned root key and the certificate's verifier."""
    return verify_usage_copy(
        token,
        certificate_token,
        root=PublicKey.from_jwk(root_jwk),
        certificate_verifier=verifier,
        now=now,
    )


def print_copy(verdict: UsageCopyVerdict, console: Console) -> None:
    """What a usage copy states and its own checks (the certificate's come after)."""
    copy = verdict.usage_copy
    if copy is not None:
        claimed = "" if verdict.valid else " (claimed, not verified)"
        console.print(f"[bold]{copy.stamp_text}[/]{claimed}")
        console.print(f"usage copy {copy.usage_copy_id} of {copy.certificate_id}")
    table = Table("", Column("usage copy check", no_wrap=True), "reason")
    for check in verdict.checks:
        mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(mark, check.name.value, check.reason)
    console.print(table)


def print_copy_answer(verdict: verification_pb2.Verdict, console: Console) -> bool:
    """An online usage-copy verdict's stamp and copy checks; True when they all passed."""
    if verdict.HasField("usage_copy"):
        claimed = "" if verdict.valid else " (claimed, not verified)"
        console.print(f"[bold]{verdict.usage_copy.stamp_text}[/]{claimed}")
    table = Table("", Column("usage copy check", no_wrap=True), "reason")
    for check in verdict.usage_copy_checks:
        mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
        name = verification_pb2.CheckName.Name(check.check).removeprefix("CHECK_NAME_")
        table.add_row(mark, name, check.reason)
    console.print(table)
    return all(c.passed for c in verdict.usage_copy_checks)
