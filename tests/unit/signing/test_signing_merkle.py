"""RFC 9162 proofs from `signing.merkle`, checked by a verifier written here from the RFC.

The reference below follows RFC 9162 §2.1 literally (MTH, PATH, PROOF/SUBPROOF and the
§2.1.3.2 / §2.1.4.2 verification algorithms) over the raw leaves, sharing no code with
the hub's module, so a bug in one is not hidden by the same bug in the other.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest

from signing import merkle

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "assets"))
from rfc9162_reference import (
    ref_mth,
    ref_path,
    ref_subproof,
    ref_verify_consistency,
    ref_verify_inclusion,
)

# --- the hub's module, fed the way the store feeds it --------------------------------------


def build(leaves: list[bytes]) -> tuple[dict[tuple[int, int], bytes], list[bytes]]:
    """Nodes by (level, index) and the frontier, built by `append_leaf` one leaf at a time."""
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    for size, data in enumerate(leaves):
        for key, digest in merkle.append_leaf(
            merkle.SHA256, frontier, size, merkle.SHA256.leaf(data)
        ):
            nodes[key] = digest
    return nodes, frontier


LEAVES = [f"entry {i}".encode() for i in range(2000)]
NODES, _ = build(LEAVES)
RNG = random.Random(9162)


def test_known_answer_empty_and_single() -> None:
    assert merkle.root_of(merkle.SHA256, []) == hashlib.sha256(b"").digest()
    assert merkle.SHA256.leaf(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


@pytest.mark.parametrize(
    "size",
    sorted({1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 2000, *RNG.sample(range(1, 2001), 40)}),
)
def test_root_and_inclusion_match_the_rfc(size: int) -> None:
    leaves = LEAVES[:size]
    _, frontier = build(leaves)
    root = merkle.root_of(merkle.SHA256, frontier)
    assert root == ref_mth(leaves)
    assert len(merkle.frontier_keys(size)) == len(frontier) == bin(size).count("1")
    for index in {0, size - 1, *RNG.sample(range(size), min(size, 6))}:
        proof = merkle.hashes_of(merkle.SHA256, merkle.inclusion_ranges(index, size), NODES)
        assert proof == ref_path(index, leaves)
        leaf = merkle.SHA256.leaf(leaves[index])
        assert ref_verify_inclusion(index, size, leaf, proof, root)
        merkle.verify_inclusion(merkle.SHA256, index, size, leaf, proof, root)
        with pytest.raises(merkle.ProofInvalid):
            merkle.verify_inclusion(
                merkle.SHA256, index, size, merkle.SHA256.leaf(b"other"), proof, root
            )


PAIRS = sorted(
    {
        (1, 1),
        (1, 2),
        (3, 7),
        (4, 8),
        (8, 9),
        (1024, 2000),
        *((a, b) for b in RNG.sample(range(1, 2001), 40) for a in [RNG.randint(1, b)]),
    }
)


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_consistency_matches_the_rfc(first: int, second: int) -> None:
    proof = merkle.hashes_of(merkle.SHA256, merkle.consistency_ranges(first, second), NODES)
    if first != second:
        assert proof == ref_subproof(first, LEAVES[:second], True)
    old, new = ref_mth(LEAVES[:first]), ref_mth(LEAVES[:second])
    assert ref_verify_consistency(first, second, old, new, proof)
    merkle.verify_consistency(merkle.SHA256, first, second, old, new, proof)
    forged = ref_mth([b"forged", *LEAVES[1:first]])
    with pytest.raises(merkle.ProofInvalid):
        merkle.verify_consistency(merkle.SHA256, first, second, forged, new, proof)
    if proof:
        bent = [bytes(32), *proof[1:]]
        with pytest.raises(merkle.ProofInvalid):
            merkle.verify_consistency(merkle.SHA256, first, second, old, new, bent)


def test_proof_touches_few_nodes_at_a_million() -> None:
    size = 1_000_000
    for index in (0, 1, 524_287, 999_999):
        needed = merkle.nodes_needed(merkle.inclusion_ranges(index, size))
        assert len(needed) <= 2 * 20
    assert len(merkle.nodes_needed(merkle.consistency_ranges(777_777, size))) <= 2 * 20


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(merkle.InvalidRequest, match="leaf_index"):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(merkle.InvalidRequest, match="first"):
        merkle.consistency_ranges(6, 5)


# --- checkpoints (C2SP tlog-checkpoint over signed-note) -----------------------------------

from datetime import UTC, datetime  # noqa: E402

from signing import SignatureInvalid, generate  # noqa: E402
from signing.checkpoint import TreeHead, key_id, open_tree_head, sign_tree_head  # noqa: E402
from signing.errors import MalformedDocument  # noqa: E402


def test_checkpoint_round_trip_and_format() -> None:
    key = generate()
    head = TreeHead(
        "tongban.example/audit", 182, bytes(range(32)), datetime(2026, 12, 3, tzinfo=UTC)
    )
    note = sign_tree_head(head, key)
    lines = note.split("\n")
    assert lines[:5] == [
        "tongban.example/audit",
        "182",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "time 2026-12-03T00:00:00Z",
        "",
    ]
    assert lines[5].startswith("\u2014 tongban.example/audit ")
    import base64

    blob = base64.b64decode(lines[5].split(" ")[2])
    raw = base64.urlsafe_b64decode(key.public_jwk()["x"] + "==")
    assert (
        blob[:4]
        == hashlib.sha256(b"tongban.example/audit\n\x01" + raw).digest()[:4]
        == key_id(head.origin, key)
    )
    assert open_tree_head(note, key.public_key()) == head


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda n: n.replace("\n182\n", "\n183\n"), SignatureInvalid),
        (lambda n: n.replace("time 2026", "time 2025"), SignatureInvalid),
        (lambda n: n.split("\n\n")[0] + "\n", MalformedDocument),
        (lambda n: n.replace("\n182\n", "\n0182\n"), MalformedDocument),
    ],
)
def test_checkpoint_edits_fail(edit, error) -> None:  # type: ignore[no-untyped-def]
    key = generate()
    note = sign_tree_head(TreeHead("o", 182, bytes(32), datetime(2026, 12, 3, tzinfo=UTC)), key)
    with pytest.raises(error):
        open_tree_head(edit(note), key.public_key())
    with pytest.raises(SignatureInvalid):
        open_tree_head(note, generate().public_key())
