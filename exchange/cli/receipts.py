"""`tongban receipt verify`: check a Lookup answer's receipt offline with the trust bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import ConfigError, TongbanError
from signing.department import check_record_signature, open_department_keys
from signing.keys import PublicKey
from signing.receipt import (
    AnswerView,
    ReceiptCheck,
    answer_from_json,
    open_receipt,
    verify_receipt,
)

app = typer.Typer(help="Check the hub's receipts for Lookup answers.", no_args_is_help=True)

ROOT_FILE = "root.jwk.json"
DEPARTMENT_KEYS_FILE = "department-keys.jws"


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


def _department_checks(answer: Path, bundle: Path | None, root: PublicKey) -> list[ReceiptCheck]:
    """One check per department-signed record of the answer, with the bundle's keys."""
    data = json.loads(_read_text(answer, "--answer"))
    signed = [
        r
        for r in data.get("records") or []
        if (r.get("provenance") or {}).get("departmentSignature")
    ]
    if not signed:
        return []
    keys_file = None if bundle is None else bundle / DEPARTMENT_KEYS_FILE
    if keys_file is None or not keys_file.exists():
        return [
            ReceiptCheck(
                "department signatures", False, f"no {DEPARTMENT_KEYS_FILE} in --bundle to check "
                f"the {len(signed)} department-signed records with"
            )
        ]  # fmt: skip
    try:
        keys = open_department_keys(_read_text(keys_file, "--bundle"), root)
    except TongbanError as exc:
        return [ReceiptCheck("department keys", False, exc.message)]
    checks = []
    for record in signed:
        provenance = record["provenance"]
        subject = record.get("subject") or {}
        kind = str(subject.get("kind", "")).removeprefix("KEY_KIND_")
        name = (
            f"department signature {provenance.get('adapterId')}/{provenance.get('sourceRecordId')}"
        )
        problem = check_record_signature(
            provenance["departmentSignature"],
            keys.get(str(provenance.get("adapterId")), []),
            record_type=str(record.get("recordType", "")),
            source_record_id=str(provenance.get("sourceRecordId", "")),
            subject=f"{kind}:{subject.get('value', '')}",
            fields=record.get("fields") or {},
        )
        detail = "signed by the department's key, over exactly these fields"
        checks.append(ReceiptCheck(name, problem is None, problem or detail))
    return checks


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
    checks = list(verdict.checks)
    if answer is not None:
        checks += _department_checks(answer, bundle, root_key)
    for check in checks:
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
    if not verdict.valid or not all(c.passed for c in checks):
        typer.echo("RECEIPT NOT VALID")
        raise typer.Exit(1)
    typer.echo("RECEIPT VALID")
