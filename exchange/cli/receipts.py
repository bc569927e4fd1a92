"""`tongban receipt verify`: check a Lookup answer's receipt offline with the trust bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import ConfigError
from signing.keys import PublicKey
from signing.receipt import AnswerView, answer_from_json, open_receipt, verify_receipt

app = typer.Typer(help="Check the hub's receipts for Lookup answers.", no_args_is_help=True)

ROOT_FILE = "root.jwk.json"


def _root_key(bundle: Path | None, root: Path | None) -> PublicKey:
    path = root if root is not None else (bundle / ROOT_FILE if bundle is not None else None)
    option = "--root" if root is not None else "--bundle"
    if path is None:
        raise ConfigError("--bundle", "give the trust folder (`tongban trust export`) or --root")
    try:
        return PublicKey.from_jwk(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(option, f"cannot read the hub's root key from {path}: {exc}") from exc


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(option, f"cannot read {path}: {exc}") from exc


def read_receipt_claims(path: Path, root: PublicKey) -> dict[str, Any]:
    """The verified claims of a receipt file. Raises `VerificationError`, `ConfigError`."""
    return open_receipt(_read_text(path, "RECEIPT"), root)


def _answer(path: Path) -> AnswerView:
    try:
        return answer_from_json(json.loads(_read_text(path, "--answer")))
    except ValueError as exc:
        raise ConfigError("--answer", f"{path} is not a Lookup answer in JSON: {exc}") from exc


@app.command("verify")
def verify(
    receipt: Annotated[Path, typer.Argument(help="The receipt (from `tongban lookup --receipt`).")],
    answer: Annotated[
        Path | None,
        typer.Option("--answer", help="The answer it is for (from `tongban lookup --answer`)."),
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="A folder written by `tongban trust export`.")
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="The hub's root public key (JWK) instead.")
    ] = None,
) -> None:
    """Check the receipt's signature and that the answer is exactly what it describes;
    print each check; exit 0 when all pass, 1 naming what failed."""
    root_key = _root_key(bundle, root)
    token = _read_text(receipt, "RECEIPT")
    verdict = verify_receipt(token, root_key, _answer(answer) if answer is not None else None)
    for check in verdict.checks:
        mark = "PASS" if check.passed else "FAIL"
        typer.echo(f"{check.name:<40} {mark}  {check.detail}")
    claims = verdict.claims
    if claims:
        audit = claims.get("audit") or {}
        purpose = claims.get("purpose") or {}
        typer.echo(
            f"receipt: {claims.get('caller')} asked about "
            f"{(claims.get('subject') or {}).get('masked')} for case "
            f"{purpose.get('case_id')} ({purpose.get('reason')}) at {claims.get('issued_at')}; "
            f"audit leaf {audit.get('leaf_index')} of {audit.get('log')}"
        )
    if answer is None:
        typer.echo("(no --answer given: only the signature was checked)")
    if not verdict.valid:
        typer.echo("RECEIPT NOT VALID")
        raise typer.Exit(1)
    typer.echo("RECEIPT VALID")
