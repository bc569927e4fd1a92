"""The GM suite against implementations Tongban does not run its checks through.

- the `openssl` command line (OpenSSL 3 `pkeyutl -rawin -digest sm3 -pkeyopt distid:…`)
  verifies Tongban's SM2 signatures on a certificate, the trust bundle and the status
  list, and Tongban verifies SM2 signatures that `openssl` made;
- a dual-signed certificate verifies under Node's `jose` (its EdDSA token, with the
  trust bundle's JWKS) and under `openssl` (its SM2 token).

JOSE signatures are `r || s`; OpenSSL reads and writes DER `SEQUENCE {r, s}`: the
conversion happens here, as any verifier in another language would do it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cert_testkit import AMR, LICENCE, all_tokens, licence_request
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from exchange.auth.policy import Caller
from exchange.certificates.keys import key_passphrase
from exchange.certificates.library import CertificateLibrary
from exchange.settings import Settings
from signing import Algorithm, PublicKey, StatusList, TrustBundle, Verifier, parse_compact
from signing.base64url import b64url_decode, b64url_encode
from signing.jws import TYP_CERTIFICATE, TYP_STATUS_LIST, TYP_TRUST_BUNDLE

ANONYMOUS = Caller(organization="", system="anonymous", anonymous_dev=True)
OPENSSL = shutil.which("openssl")
NODE, NPM = shutil.which("node"), shutil.which("npm")
JOSE_VERSION = "6.2.19"
DISTID = "distid:1234567812345678"  # GM/T 0009 default user ID

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(OPENSSL), *args], input=stdin, capture_output=True, check=False)


def openssl_verifies(token: str, jwk: dict[str, str], folder: Path) -> bool:
    """`openssl pkeyutl -verify` of a compact JWS's SM2 signature under `jwk`."""
    header, payload, signature = token.split(".")
    raw = b64url_decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    public = PublicKey.from_jwk(jwk)
    assert public.alg is Algorithm.SM2
    spki = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    from signing.sm2 import Sm2PublicKey

    (folder / "pub.der").write_bytes(Sm2PublicKey(*spki).spki_der())
    (folder / "input").write_bytes(f"{header}.{payload}".encode("ascii"))
    (folder / "sig.der").write_bytes(encode_dss_signature(r, s))
    done = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(folder / "pub.der"), "-keyform", "DER",
        "-rawin", "-digest", "sm3", "-pkeyopt", DISTID,
        "-in", str(folder / "input"), "-sigfile", str(folder / "sig.der"),
    )  # fmt: skip
    return done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


def openssl_signs(token: str, key_pem: str, passphrase: bytes, folder: Path) -> str:
    """`token` with its signature replaced by one `openssl pkeyutl -sign` made."""
    header, payload, _ = token.split(".")
    (folder / "key.pem").write_text(key_pem, encoding="ascii")
    (folder / "input").write_bytes(f"{header}.{payload}".encode("ascii"))
    done = subprocess.run(
        [
            str(OPENSSL), "pkeyutl", "-sign", "-inkey", str(folder / "key.pem"),
            "-passin", "env:TONGBAN_TEST_KEY_PASSPHRASE", "-rawin", "-digest", "sm3",
            "-pkeyopt", DISTID, "-in", str(folder / "input"),
        ],
        capture_output=True,
        check=False,
        env={**os.environ, "TONGBAN_TEST_KEY_PASSPHRASE": passphrase.decode()},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    r, s = decode_dss_signature(done.stdout)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{header}.{payload}.{b64url_encode(signature)}"


def _issue(library: CertificateLibrary) -> list[str]:
    issued = library.lifecycle.issue(licence_request(), ANONYMOUS).certificate
    return all_tokens(issued)


@pytest.mark.parametrize("cert_settings", ["gm"], indirect=True)
def test_openssl_verifies_certificate_trust_bundle_and_status_list(
    library: CertificateLibrary, tmp_path: Path
) -> None:
    [token] = _issue(library)
    trust = library.trust.current()
    bundle_token, status_token, root_jwk = trust.require_signed()
    issuer_jwk = trust.bundle.get(parse_compact(token, typ=TYP_CERTIFICATE).kid)
    assert issuer_jwk is not None
    # The GM hub signs everything with SM2: certificates, the bundle, the status list.
    for signed, typ in (
        (token, TYP_CERTIFICATE),
        (bundle_token, TYP_TRUST_BUNDLE),
        (status_token, TYP_STATUS_LIST),
    ):
        assert parse_compact(signed, typ=typ).alg is Algorithm.SM2
    assert openssl_verifies(token, issuer_jwk.public_key.jwk(), tmp_path)
    assert openssl_verifies(bundle_token, root_jwk, tmp_path)
    assert openssl_verifies(status_token, root_jwk, tmp_path)
    # And openssl refuses a signature over other bytes (the test can fail).
    header, _, signature = token.split(".")
    other = f"{header}.{b64url_encode(b'{}')}.{signature}"
    assert not openssl_verifies(other, issuer_jwk.public_key.jwk(), tmp_path)


@pytest.mark.parametrize("cert_settings", ["gm"], indirect=True)
def test_tongban_verifies_what_openssl_signed(
    library: CertificateLibrary, cert_settings: Settings, tmp_path: Path
) -> None:
    [token] = _issue(library)
    passphrase = key_passphrase(cert_settings)
    assert passphrase is not None
    kid = parse_compact(token, typ=TYP_CERTIFICATE).kid
    issuer = library.keys.find(kid)
    root = library.keys.root()
    assert root is not None
    trust = library.trust.current()
    bundle_token, status_token, root_jwk = trust.require_signed()

    remade = openssl_signs(token, issuer.private_material, passphrase, tmp_path)
    assert remade != token  # SM2 signatures are randomized: openssl made a new one
    bundle = TrustBundle.load(
        openssl_signs(bundle_token, root.private_material, passphrase, tmp_path),
        root_jwk,
        datetime.now(UTC),
    )
    status_list = StatusList.load(
        openssl_signs(status_token, root.private_material, passphrase, tmp_path),
        root_jwk,
        datetime.now(UTC),
    )
    verdict = Verifier.from_bundle(bundle, status_list).verify(remade)
    assert verdict.valid, verdict.reasons
    forged = remade[:-4] + ("AAAA" if not remade.endswith("AAAA") else "BBBB")
    assert not Verifier.from_bundle(bundle, status_list).verify(forged).valid


@pytest.fixture(scope="session")
def node_jose(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `jose` installed from the npm registry (skips when unreachable)."""
    if NODE is None or NPM is None:
        pytest.skip("node and npm are not installed")
    folder = tmp_path_factory.mktemp("node-jose")
    (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
    done = subprocess.run(
        [str(NPM), "install", "--no-audit", "--no-fund", "--silent", f"jose@{JOSE_VERSION}"],
        cwd=folder,
        capture_output=True,
        timeout=240,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"npm could not install jose: {done.stderr.decode()[-300:]}")
    return folder


_VERIFY_JS = """
import * as jose from 'jose';
import { readFileSync } from 'node:fs';
const { jwks, token } = JSON.parse(readFileSync(0, 'utf8'));
const { payload, protectedHeader } = await jose.jwtVerify(
  token, jose.createLocalJWKSet(jwks), { typ: 'tongban-cert+jws', algorithms: ['EdDSA'] });
console.log(JSON.stringify({ alg: protectedHeader.alg, id: payload.id }));
"""


@pytest.mark.parametrize("cert_settings", ["dual"], indirect=True)
def test_dual_signed_verifies_under_node_jose_and_openssl(
    library: CertificateLibrary, node_jose: Path, tmp_path: Path
) -> None:
    tokens = _issue(library)
    assert len(tokens) == 2
    primary, second = (parse_compact(t, typ=TYP_CERTIFICATE) for t in tokens)
    assert (primary.alg, second.alg) == (Algorithm.EDDSA, Algorithm.SM2)
    assert primary.payload == second.payload  # one canonical payload, two signatures
    trust = library.trust.current()
    # Stock JOSE: the EdDSA token with the bundle's keys (the SM2 ones are skipped).
    jwks = {"keys": [k for k in trust.bundle.to_jwks()["keys"] if k.get("crv") == "Ed25519"]}
    (node_jose / "verify.mjs").write_text(_VERIFY_JS)

    def node_verify(token: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(NODE), "verify.mjs"],
            cwd=node_jose,
            input=json.dumps({"jwks": jwks, "token": token}).encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )

    done = node_verify(tokens[0])
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["alg"] == "EdDSA"
    assert answer["id"] == json.loads(primary.payload)["id"]
    tampered = tokens[0].split(".")
    tampered[1] = b64url_encode(primary.payload.replace(b'"version":1', b'"version":2'))
    assert node_verify(".".join(tampered)).returncode != 0
    # The GM domain: the SM2 token with the issuer's SM2 key.
    sm2_key = trust.bundle.get(second.kid)
    assert sm2_key is not None
    assert sm2_key.issuer_uscc == AMR
    assert openssl_verifies(tokens[1], sm2_key.public_key.jwk(), tmp_path)
    # Tongban accepts either token and says which suites verified.
    dual = trust.verifier.verify_tokens(tokens)
    assert dual.valid
    assert dual.verified_suites == ("international (EdDSA)", "gm (SM3withSM2)")
    assert library.types.get(LICENCE).dual_signed


def test_openssl_speaks_the_sm2_distid_option(tmp_path: Path) -> None:
    """The CLI options the README tells verifiers to use exist in this OpenSSL."""
    key = tmp_path / "k.pem"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    (tmp_path / "m").write_bytes(b"message digest")
    signed = _openssl(
        "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-digest", "sm3",
        "-pkeyopt", DISTID, "-in", str(tmp_path / "m"),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
