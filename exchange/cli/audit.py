"""`tongban audit`: check the audit log, save and check signed tree heads, prove entries.

Two ways in. With the store (an operator on a hub machine): `verify` and `check`
recompute every leaf from its entry and the tree from its leaves, so edits, deletions,
reorders and truncation made directly in SQL are found. Through a hub (`--hub`, an
auditor or a hall): `check` and `prove` fetch signed tree heads and RFC 9162 proofs and
verify them here, trusting only the hub's root key (`--root` or `--bundle`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from certstore.audit import AuditLog
from certstore.certificates import CertificateStore
from certstore.database import Database
from domain.errors import ConfigError, TongbanError, VerificationError
from domain.subjects import KeyKind
from exchange.audit import verified_tree_heads
from exchange.cli.client import (
    DevTokenOption,
    HubConnection,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    answer_json,
)
from exchange.cli.server import ConfigOption, _settings
from exchange.generated import audit_pb2, audit_pb2_grpc, common_pb2
from signing import checkpoint, merkle
from signing.keys import PublicKey

app = typer.Typer(help="Check the audit log and prove its entries.", no_args_is_help=True)

ROOT_FILE = "root.jwk.json"

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="The hub's root public key (JWK, from `tongban trust export`) that signs tree "
        "heads; default: --bundle's root.jwk.json, else (with the store) the store's root key.",
    ),
]
BundleOption = Annotated[
    Path | None,
    typer.Option("--bundle", help="A folder written by `tongban trust export`."),
]
HubOptionalOption = Annotated[
    str | None,
    typer.Option(
        "--hub", envvar="TONGBAN_HUB", help="Ask this hub (HOST:PORT) instead of reading the store."
    ),
]


def _read_jwk(path: Path, option: str) -> PublicKey:
    try:
        return PublicKey.from_jwk(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(option, f"cannot read a JWK from {path}: {exc}") from exc


def _pinned_root(root: Path | None, bundle: Path | None) -> PublicKey | None:
    if root is not None:
        return _read_jwk(root, "--root")
    if bundle is not None:
        return _read_jwk(bundle / ROOT_FILE, "--bundle")
    return None


def _store_root(database: Database) -> PublicKey | None:
    root = next((k for k in CertificateStore(database).signing_keys() if k.is_root), None)
    return PublicKey.from_jwk(root.public_jwk) if root else None


def _read_head(path: Path, root: PublicKey | None, option: str) -> checkpoint.TreeHead:
    try:
        note = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(option, f"cannot read a tree head from {path}: {exc}") from exc
    if root is None:
        raise ConfigError("--root", "give the hub's root key to check a saved tree head")
    return checkpoint.open_tree_head(note, root)


def _store_check(
    database: Database, root_key: PublicKey | None, saved: checkpoint.TreeHead | None
) -> tuple[bool, list[str]]:
    """Recompute the log from the store; the lines to print and whether all passed."""
    store = AuditLog(database)
    lines: list[str] = []
    heads, problem = verified_tree_heads(store, root_key) if root_key else ({}, None)
    if root_key is None:
        lines.append("signed tree heads   SKIPPED: no root key in the store (give --root)")
    elif problem is not None:
        lines.append(f"signed tree heads   BROKEN: {problem}")
        return False, lines
    else:
        lines.append(f"signed tree heads   PASS: {len(heads)} verify with root key {root_key.kid}")
    if saved is not None:
        if heads.get(saved.size, saved.root.hex()) != saved.root.hex():
            lines.append(
                f"saved tree head     BROKEN: the store's signed head of size {saved.size} "
                "has another root"
            )
            return False, lines
        heads[saved.size] = saved.root.hex()
    report = store.verify(heads)
    if not report.intact:
        lines.append(
            f"audit log           BROKEN at entry {report.first_bad_sequence}: {report.problem}"
        )
        return False, lines
    if report.entries_checked == 0:
        lines.append("audit log           BROKEN: it holds no entries; nothing was verified")
        return False, lines
    lines.append(
        f"audit log           PASS: {report.entries_checked} entries recomputed into the tree"
    )
    if saved is not None:
        lines.append(
            f"saved tree head     PASS: the log still holds the {saved.size} entries of the "
            f"head saved at {saved.time:%Y-%m-%dT%H:%M:%SZ}"
        )
    latest = store.latest_tree_head()
    if saved is not None and latest is not None and latest.size >= saved.size:
        proof = store.consistency_proof(saved.size, latest.size)
        merkle.verify_consistency(
            store.hasher(), saved.size, latest.size, saved.root, bytes.fromhex(latest.root), proof
        )
        lines.append(
            f"consistency proof   PASS: the signed head of size {latest.size} extends it "
            f"({len(proof)} hashes)"
        )
    return True, lines


def _finish(ok: bool, lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)
    if not ok:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    config: ConfigOption = None,
    root: RootOption = None,
    head: Annotated[
        Path | None,
        typer.Option("--head", help="A saved tree head (checkpoint) the log must still contain."),
    ] = None,
) -> None:
    """Recompute the audit log from the store and check every signed tree head (and
    --head); exit 0 when intact, 1 naming the first tampered entry."""
    from exchange.hub import describe_store, open_existing_store

    settings = _settings(config)
    database = open_existing_store(settings)
    typer.echo(f"store               {describe_store(settings)}")
    try:
        root_key = _pinned_root(root, None) or _store_root(database)
        saved = _read_head(head, root_key, "--head") if head is not None else None
        ok, lines = _store_check(database, root_key, saved)
    finally:
        database.dispose()
    _finish(ok, lines)


def _hub(
    hub: str, dev_token: str | None, tls_ca: Path | None, tls_cert: Path | None,
    tls_key: Path | None,
) -> HubConnection:  # fmt: skip
    return HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)


@app.command("check")
def check(
    since: Annotated[
        Path, typer.Option("--since", help="A tree head saved earlier (`tongban audit head`).")
    ],
    config: ConfigOption = None,
    root: RootOption = None,
    bundle: BundleOption = None,
    hub: HubOptionalOption = None,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Prove that today's log extends a tree head saved earlier: with --hub by a signed
    consistency proof; otherwise by recomputing the store's log."""
    pinned = _pinned_root(root, bundle)
    if hub is None:
        from exchange.hub import describe_store, open_existing_store

        settings = _settings(config)
        database = open_existing_store(settings)
        typer.echo(f"store               {describe_store(settings)}")
        try:
            root_key = pinned or _store_root(database)
            saved = _read_head(since, root_key, "--since")
            ok, lines = _store_check(database, root_key, saved)
        finally:
            database.dispose()
        _finish(ok, lines)
        return
    if pinned is None:
        raise ConfigError(
            "--root", "checking through a hub needs the pinned root key (--root or --bundle)"
        )
    saved = _read_head(since, pinned, "--since")
    lines = [f"saved tree head     PASS: size {saved.size}, signed by root key {pinned.kid}"]
    answer = _hub(hub, dev_token, tls_ca, tls_cert, tls_key).call(
        audit_pb2_grpc.AuditServiceStub,
        "GetConsistencyProof",
        audit_pb2.GetConsistencyProofRequest(first_size=saved.size),
    )
    ok = True
    try:
        latest = checkpoint.open_tree_head(answer.second.checkpoint, pinned, origin=saved.origin)
        lines.append(f"newest tree head    PASS: size {latest.size}, signed by the same root key")
        merkle.verify_consistency(
            merkle.tree_hasher(answer.second.hash or "sha256"),
            saved.size, latest.size, saved.root, latest.root, list(answer.proof),
        )  # fmt: skip
        lines.append(
            f"consistency proof   PASS: the log of {latest.size} extends the saved head of "
            f"{saved.size} ({len(answer.proof)} hashes)"
        )
    except VerificationError as exc:
        ok = False
        lines.append(f"consistency         FAIL: {exc.message}")
    _finish(ok, lines)


@app.command("head")
def head(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save it to this file.")] = None,
    config: ConfigOption = None,
    hub: HubOptionalOption = None,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Print (or save) the newest signed tree head, for a later `audit check --since`."""
    if hub is not None:
        answer = _hub(hub, dev_token, tls_ca, tls_cert, tls_key).call(
            audit_pb2_grpc.AuditServiceStub, "GetTreeHead", audit_pb2.GetTreeHeadRequest(fresh=True)
        )
        note = answer.tree_head.checkpoint
    else:
        from exchange.hub import open_store

        database = open_store(_settings(config))
        try:
            latest = AuditLog(database).latest_tree_head()
        finally:
            database.dispose()
        if latest is None:
            raise TongbanError("no signed tree head yet (a hub with the root key signs one)")
        note = latest.note
    if out is None:
        typer.echo(note, nl=False)
        return
    try:
        with out.open("x", encoding="utf-8") as handle:
            handle.write(note)
    except OSError as exc:
        raise ConfigError("--out", f"cannot write {out}: {exc.strerror or exc}") from exc
    typer.echo(f"saved the tree head of size {note.splitlines()[1]} to {out}")


@app.command("prove")
def prove(
    leaf: Annotated[
        int | None, typer.Option("--leaf", help="The leaf index to prove.", min=0)
    ] = None,
    receipt: Annotated[
        Path | None, typer.Option("--receipt", help="A receipt whose audit leaf to prove.")
    ] = None,
    root: RootOption = None,
    bundle: BundleOption = None,
    hub: HubOptionalOption = None,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Prove that an entry (or a receipt's access) is in the log under a signed tree head."""
    pinned = _pinned_root(root, bundle)
    if pinned is None:
        raise ConfigError("--root", "proving needs the pinned root key (--root or --bundle)")
    if hub is None:
        raise ConfigError("--hub", "give the hub to ask for the proof")
    expected_leaf: bytes | None = None
    if receipt is not None:
        from exchange.cli.receipts import read_receipt_claims

        position = read_receipt_claims(receipt, pinned).get("audit") or {}
        leaf = int(position.get("leaf_index", -1))
        expected_leaf = bytes.fromhex(str(position.get("leaf_hash", "")))
    if leaf is None or leaf < 0:
        raise ConfigError("--leaf", "give the leaf index, or --receipt")
    answer = _hub(hub, dev_token, tls_ca, tls_cert, tls_key).call(
        audit_pb2_grpc.AuditServiceStub,
        "GetInclusionProof",
        audit_pb2.GetInclusionProofRequest(leaf_index=leaf),
    )
    lines: list[str] = []
    ok = True
    try:
        tree = checkpoint.open_tree_head(answer.tree_head.checkpoint, pinned)
        lines.append(f"tree head           PASS: size {tree.size}, signed by root key {pinned.kid}")
        leaf_hash = answer.leaf_hash
        if expected_leaf is not None:
            if leaf_hash != expected_leaf:
                raise VerificationError("the hub's leaf differs from the one the receipt names")
            lines.append("receipt leaf        PASS: the hub holds the leaf the receipt names")
        merkle.verify_inclusion(
            merkle.tree_hasher(answer.tree_head.hash or "sha256"),
            leaf, tree.size, leaf_hash, list(answer.proof), tree.root,
        )  # fmt: skip
        lines.append(
            f"inclusion proof     PASS: leaf {leaf} is in the tree of {tree.size} "
            f"({len(answer.proof)} hashes)"
        )
    except VerificationError as exc:
        ok = False
        lines.append(f"inclusion           FAIL: {exc.message}")
    _finish(ok, lines)


@app.command("access")
def access(
    kind: Annotated[KeyKind, typer.Argument(help="The subject's key kind.", case_sensitive=False)],
    value: Annotated[str, typer.Argument(help="The subject's key.")],
    hub: Annotated[str, typer.Option("--hub", envvar="TONGBAN_HUB", help="HOST:PORT.")] = (
        "127.0.0.1:50051"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """The subject's access report: who looked at their data, when, for which case and
    why, and what they read (AuditService.ListAccess; each entry carries its inclusion
    proof, which `tongban audit prove --leaf N` checks)."""
    connection = _hub(hub, dev_token, tls_ca, tls_cert, tls_key)
    subject = common_pb2.SubjectKey(
        kind=common_pb2.KeyKind.Value(f"KEY_KIND_{kind.value}"), value=value
    )
    entries: list[audit_pb2.AccessEntry] = []
    token = ""
    while True:
        page = connection.call(
            audit_pb2_grpc.AuditServiceStub,
            "ListAccess",
            audit_pb2.ListAccessRequest(subject=subject, page_size=200, page_token=token),
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    if as_json:
        typer.echo(answer_json(audit_pb2.ListAccessResponse(entries=entries)))
        return
    console = Console()
    if not entries:
        console.print(f"nobody looked at {kind.value} {value} (no entry in the audit log)")
        return
    table = Table(
        "leaf",
        Column("when (UTC)", no_wrap=True),
        Column("who", overflow="fold"),
        Column("case", overflow="fold"),
        Column("why", overflow="fold"),
        "outcome",
        Column("record types read", overflow="fold"),
        title=f"access report for {kind.value} {value}",
    )
    for entry in entries:
        table.add_row(
            str(entry.leaf_index),
            entry.at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            entry.caller,
            entry.purpose.case_id,
            entry.purpose.reason,
            entry.outcome,
            "\n".join(entry.record_types),
        )
    console.print(table)
