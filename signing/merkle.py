"""RFC 9162 (Certificate Transparency 2.0) Merkle trees: hashes, proofs, verification.

Pure: the store hands in the hashes of complete subtrees it keeps, keyed by
``(level, index)`` (the subtree of leaves ``index * 2**level .. (index + 1) * 2**level - 1``),
and gets back proofs; a verifier needs only this module.

The hash function is a parameter (`TreeHasher`), so the suite can choose it in one place
(`tree_hasher`): SHA-256 by default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.crypto import HashAlg
from domain.errors import InvalidRequest, VerificationError
from signing.errors import MalformedDocument

NodeKey = tuple[int, int]


class HashObject(Protocol):
    """What `hashlib` constructors return (and an SM3 binding must too)."""

    @property
    def digest_size(self) -> int: ...

    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TreeHasher:
    """The RFC 9162 §2.1.1 hashes over one hash function."""

    name: str
    new: Callable[[bytes], HashObject]

    @property
    def digest_size(self) -> int:
        return self.new(b"").digest_size

    def empty_root(self) -> bytes:
        """MTH({}) = HASH()."""
        return self.new(b"").digest()

    def leaf(self, entry: bytes) -> bytes:
        """MTH({d0}) = HASH(0x00 || d0)."""
        return self.new(b"\x00" + entry).digest()

    def node(self, left: bytes, right: bytes) -> bytes:
        """HASH(0x01 || MTH(left) || MTH(right))."""
        return self.new(b"\x01" + left + right).digest()


class _Sm3:
    """SM3 (GB/T 32905) in `hashlib`'s shape, for the GM suite's tree."""

    digest_size = 32

    def __init__(self, data: bytes) -> None:
        self._data = data

    def digest(self) -> bytes:
        return HashAlg.SM3.digest(self._data)


SHA256 = TreeHasher("sha256", hashlib.sha256)
# `[crypto] suite = "gm"`: a new audit tree is SM3 (`CryptoSuite.hash_alg`).
SM3 = TreeHasher(HashAlg.SM3.value, _Sm3)

_HASHERS: dict[str, TreeHasher] = {"sha256": SHA256, SM3.name: SM3}


def tree_hasher(name: str = "sha256") -> TreeHasher:
    """The tree hasher for a hash name (the crypto suite's choice). Raises `InvalidRequest`."""
    try:
        return _HASHERS[name]
    except KeyError as exc:
        raise InvalidRequest("hash", f"unknown tree hash {name!r}") from exc


def register_hasher(hasher: TreeHasher) -> None:
    """Make another hash (e.g. SM3) available to `tree_hasher`."""
    _HASHERS[hasher.name] = hasher


# --- structure ------------------------------------------------------------------------------


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (RFC 9162 §2.1.1's k), size > 1."""
    return 1 << ((size - 1).bit_length() - 1)


def complete_subtrees(start: int, end: int) -> list[NodeKey]:
    """The complete subtrees covering leaves [start, end), largest (leftmost) first.

    For a range that is a subtree of the RFC 9162 recursion, folding their hashes from the
    right (`fold`) gives MTH of the range.
    """
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def fold(hasher: TreeHasher, hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive complete subtrees given largest first."""
    if not hashes:
        return hasher.empty_root()
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = hasher.node(left, result)
    return result


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), in order."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1)."""
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    ranges.reverse()
    return ranges


def nodes_needed(ranges: Iterable[tuple[int, int]]) -> set[NodeKey]:
    """The stored nodes that give the MTHs of `ranges`."""
    return {key for start, end in ranges for key in complete_subtrees(start, end)}


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Ranges for an inclusion proof. Raises `InvalidRequest` when index is not in the tree."""
    if not 0 <= index < size:
        raise InvalidRequest("leaf_index", f"must be below the tree size {size}")
    return _inclusion_ranges(index, size)


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Ranges for a consistency proof (empty when first is 0 or equals second).

    Raises `InvalidRequest` when first > second.
    """
    if not 0 <= first <= second:
        raise InvalidRequest("first", f"must be between 0 and the second size {second}")
    if first in (0, second):
        return []
    return _consistency_ranges(first, second)


def hashes_of(
    hasher: TreeHasher, ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeKey, bytes]
) -> list[bytes]:
    """The MTH of each range from stored complete-subtree hashes.

    Raises `MalformedDocument` when a needed node is missing from `nodes`.
    """
    out: list[bytes] = []
    for start, end in ranges:
        try:
            out.append(fold(hasher, [nodes[key] for key in complete_subtrees(start, end)]))
        except KeyError as exc:
            raise MalformedDocument(f"merkle tree: node {exc.args[0]} is missing") from exc
    return out


# --- appending ------------------------------------------------------------------------------


def append_leaf(
    hasher: TreeHasher, frontier: list[bytes], size: int, leaf: bytes
) -> list[tuple[NodeKey, bytes]]:
    """Add leaf number `size` to `frontier` (the complete subtrees of D[0:size], largest
    first, one per set bit of size), in place; returns the nodes it completes, the leaf
    first. O(log n) hashes."""
    completed: list[tuple[NodeKey, bytes]] = [((0, size), leaf)]
    current, level, index = leaf, 0, size
    while index & 1:
        current = hasher.node(frontier.pop(), current)
        level, index = level + 1, index >> 1
        completed.append(((level, index), current))
    frontier.append(current)
    return completed


def frontier_keys(size: int) -> list[NodeKey]:
    """Where the frontier of a tree of `size` leaves sits in the node table."""
    return complete_subtrees(0, size)


def root_of(hasher: TreeHasher, frontier: Sequence[bytes]) -> bytes:
    """MTH(D[0:size]) from its frontier."""
    return fold(hasher, frontier)


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------------------


class ProofInvalid(VerificationError):
    """A Merkle proof does not prove what it claims."""


def verify_inclusion(
    hasher: TreeHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` with `root`.

    Raises `ProofInvalid` naming what failed.
    """
    if not 0 <= index < size:
        raise ProofInvalid(f"leaf {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofInvalid("the inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = hasher.node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hasher.node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofInvalid("the inclusion proof is shorter than the tree needs")
    if r != root:
        raise ProofInvalid(f"leaf {index} is not in the tree of {size} with this root")


def verify_consistency(
    hasher: TreeHasher,
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of `second` leaves with `second_root` extends the tree of
    `first` leaves with `first_root`. Raises `ProofInvalid` naming what failed."""
    if not 0 <= first <= second:
        raise ProofInvalid(f"a tree of {second} cannot extend a tree of {first}")
    if first == second:
        if proof:
            raise ProofInvalid("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofInvalid(f"two different roots for a tree of {first}")
        return
    if first == 0:
        if proof:
            raise ProofInvalid("a proof from the empty tree must be empty")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: first_root is itself a node of the path
        path.insert(0, first_root)
    if not path:
        raise ProofInvalid("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofInvalid("the consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr, sr = hasher.node(c, fr), hasher.node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = hasher.node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofInvalid("the consistency proof is shorter than the trees need")
    if fr != first_root:
        raise ProofInvalid(f"the tree of {second} does not contain the tree of {first} as signed")
    if sr != second_root:
        raise ProofInvalid(f"the proof does not lead to the root of the tree of {second}")
