"""The GM suite: SM2 verification through Tongban against the raw SM2 verify call.

- In process: `Verifier.verify` (parse, claims, six checks, verdict) against the raw
  verify of the chosen implementation, OpenSSL 3's libcrypto through `signing.sm2`
  (`EVP_DigestVerify` with SM3 and the default user ID), on the same 256 tokens, in
  interleaved rounds (target >= 0.80).
- Over gRPC: VerifyStream of SM2 tokens issued by a `tongban serve` with
  `[crypto] suite = "gm"`, against the same raw verify (reported; target >= 0.40, as
  for Ed25519).
- Beside them, `openssl speed sm2` on this machine: the C limit of one core.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Ratio, rate
from signing import (
    TYP_CERTIFICATE,
    Algorithm,
    Certificate,
    KeyRing,
    StatusList,
    StatusPurpose,
    TrustBundle,
    Verifier,
    certificate_id,
    generate,
    parse_compact,
)
from signing.base64url import b64url_decode
from signing.sm2 import Sm2PublicKey

TOKENS = 256
ROUNDS = 8
ROUND_SECONDS = 0.25
ISSUER_USCC = "91350100M000100Y43"
TYPE_CODE = "11100000000013338W001"


def _tokens() -> tuple[Verifier, list[str], Sm2PublicKey]:
    root, issuer = generate(Algorithm.SM2), generate(Algorithm.SM2)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    far = datetime(2035, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    ring = KeyRing().activate(
        issuer, issuer_department="福州市市场监督管理局", issuer_uscc=ISSUER_USCC, at=start
    )
    bundle = TrustBundle.load(
        ring.bundle(issued_at=start, next_update=far, expires=far).sign(root),
        root.public_jwk(),
        now,
    )
    status_list = StatusList(uri="https://hub.example.gov.cn/status/1")
    for index in range(0, 2000, 7):
        status_list.set(index, StatusPurpose.REVOCATION)
    loaded_status = StatusList.load(
        status_list.sign(root, issued_at=start, next_update=far, expires=far),
        root.public_jwk(),
        now,
    )
    tokens = []
    for serial in range(TOKENS):
        issued = start + timedelta(hours=serial)
        certificate = Certificate(
            id=certificate_id(TYPE_CODE, ISSUER_USCC, f"2025{serial:08d}", 1),
            type_code=TYPE_CODE,
            type_name="营业执照",
            holder_kind="USCC",
            holder_value="91350100MA2XYZ0A1B",
            issuer_department="福州市市场监督管理局",
            issuer_uscc=ISSUER_USCC,
            issued_at=issued,
            valid_from=issued,
            valid_until=far,
            version=1,
            fields={
                "name": f"福州通办科技有限公司第{serial}分公司",
                "legal_representative": "张三",
                "address": "福建省福州市鼓楼区五四路1号",
            },
            status_list_index=2001 + serial,
            status_list_uri="https://hub.example.gov.cn/status/1",
        )
        tokens.append(certificate.sign(issuer))
    jwk = issuer.public_jwk()
    raw_key = Sm2PublicKey(b64url_decode(jwk["x"]), b64url_decode(jwk["y"]))
    return Verifier.from_bundle(bundle, loaded_status), tokens, raw_key


def _raw_inputs(tokens: list[str]) -> list[tuple[bytes, bytes]]:
    parsed = [parse_compact(t, typ=TYP_CERTIFICATE) for t in tokens]
    return [(p.signature, p.signing_input) for p in parsed]


def _in_process(verifier: Verifier, tokens: list[str], raw_key: Sm2PublicKey) -> Ratio:
    assert all(verifier.verify(t).valid for t in tokens), "benchmark tokens must verify"
    next_input = itertools.cycle(_raw_inputs(tokens)).__next__
    next_token = itertools.cycle(tokens).__next__

    def raw() -> None:
        signature, data = next_input()
        raw_key.verify(signature, data)

    def verify() -> None:
        verifier.verify(next_token())

    baseline = measured = 0.0
    for _ in range(ROUNDS):
        baseline = max(baseline, rate(raw, seconds=ROUND_SECONDS))
        measured = max(measured, rate(verify, seconds=ROUND_SECONDS))
    print(f"raw SM2 verify (libcrypto EVP_DigestVerify): {baseline:,.0f}/s")
    print(f"Verifier.verify, SM2 tokens:                  {measured:,.0f}/s")
    return Ratio(
        name="gm: in-process Verifier vs raw SM2 verify (OpenSSL libcrypto)",
        measured=measured,
        baseline=baseline,
        target=0.80,
        unit="verifies/s",
    )


def openssl_speed() -> tuple[float, float] | None:
    """(sign/s, verify/s) of `openssl speed sm2` on one core, or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    done = subprocess.run(
        [openssl, "speed", "-seconds", "2", "sm2"], capture_output=True, text=True, check=False
    )
    match = re.search(r"SM2 \(CurveSM2\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", done.stdout)
    return (float(match.group(1)), float(match.group(2))) if match else None


def _verify_stream(raw_key_tokens: list[str], folder: Path) -> Ratio | None:
    """VerifyStream of SM2 tokens issued by a GM hub, against the raw verify."""
    from bench import bench_certificates as hubs

    os.environ["TONGBAN_CRYPTO__SUITE"] = "gm"
    try:
        hub = hubs._Hub(folder)
    finally:
        del os.environ["TONGBAN_CRYPTO__SUITE"]
    try:
        tokens, _ = hubs._issue_tokens(hub)
        assert parse_compact(tokens[0], typ=TYP_CERTIFICATE).alg is Algorithm.SM2
        _, jwks = hubs._published(hub)
        kid = parse_compact(tokens[0], typ=TYP_CERTIFICATE).kid
        keys = jwks["keys"]
        assert isinstance(keys, list)
        jwk = next(k for k in keys if k["kid"] == kid)
        raw_key = Sm2PublicKey(b64url_decode(jwk["x"]), b64url_decode(jwk["y"]))
        next_input = itertools.cycle(_raw_inputs(tokens)).__next__

        def raw() -> None:
            signature, data = next_input()
            raw_key.verify(signature, data)

        baseline = max(rate(raw, seconds=0.5) for _ in range(2))
        count = int(baseline * 2.0)
        asyncio.run(hubs._stream_rate(hub.address, tokens, 200))  # warm-up
        measured = 0.0
        for _ in range(3):
            baseline = max(baseline, rate(raw, seconds=0.5))
            measured = max(measured, asyncio.run(hubs._stream_rate(hub.address, tokens, count)))
        print(f"raw SM2 verify:               {baseline:,.0f}/s")
        print(f"VerifyStream of SM2 tokens:   {measured:,.0f}/s ({count} tokens per stream)")
        return Ratio(
            name="gm: VerifyStream of SM2 tokens over gRPC vs raw SM2 verify",
            measured=measured,
            baseline=baseline,
            target=0.40,
            unit="verifies/s",
        )
    finally:
        hub.stop()


def main() -> list[Ratio]:
    verifier, tokens, raw_key = _tokens()
    ratios = [_in_process(verifier, tokens, raw_key)]
    speed = openssl_speed()
    if speed is not None:
        print(f"openssl speed sm2 (one core): sign {speed[0]:,.0f}/s, verify {speed[1]:,.0f}/s")
    with tempfile.TemporaryDirectory(prefix="tongban-bench-gm-") as temporary:
        stream = _verify_stream(tokens, Path(temporary))
    if stream is not None:
        ratios.append(stream)
    return ratios
