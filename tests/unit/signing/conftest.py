"""Keys for the signing tests: generated once per session, never written anywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# `--import-mode=importlib` keeps test folders off sys.path; the signing tests share
# builders through `signing_testkit` (a name no other folder uses), so put this one back.
sys.path.insert(0, str(Path(__file__).parent))

from signing import Algorithm, SoftwareSigningKey, generate


@pytest.fixture(scope="session")
def root_key() -> SoftwareSigningKey:
    """The hub root key that signs trust bundles and status lists."""
    return generate()


@pytest.fixture(scope="session")
def issuer_key() -> SoftwareSigningKey:
    """An Ed25519 issuer key."""
    return generate(Algorithm.EDDSA)


@pytest.fixture(scope="session")
def es256_key() -> SoftwareSigningKey:
    """An ECDSA P-256 issuer key."""
    return generate(Algorithm.ES256)


@pytest.fixture(scope="session")
def other_key() -> SoftwareSigningKey:
    """A key nobody trusts."""
    return generate()


@pytest.fixture(params=[Algorithm.EDDSA, Algorithm.ES256], ids=["EdDSA", "ES256"])
def any_issuer_key(
    request: pytest.FixtureRequest, issuer_key: SoftwareSigningKey, es256_key: SoftwareSigningKey
) -> SoftwareSigningKey:
    """Each issuer key algorithm in turn."""
    return issuer_key if request.param is Algorithm.EDDSA else es256_key


@pytest.fixture(scope="session")
def vectors() -> dict[str, object]:
    """The checked-in vectors (`tests/assets/signing/make_vectors.py` writes them)."""
    path = Path(__file__).resolve().parents[2] / "assets" / "signing" / "vectors.json"
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
