"""SM2 signatures (GB/T 32918.2-2016, GM/T 0003.2) over SM3, through the system OpenSSL 3.

A thin `ctypes` binding to `libcrypto.so.3` (Debian's `libssl3`, part of every base
install): EVP_PKEY keys and `EVP_DigestSign`/`EVP_DigestVerify` with SM3 and the signer's
distinguishing identifier, so the Z value of GB/T 32918.2 §5.5 is computed by OpenSSL:
``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)`` and ``e = SM3(Z || M)``.
The default identifier is GM/T 0009-2012 §10's ``1234567812345678``.

Why OpenSSL and not a PyPI package: it verifies at OpenSSL's own C speed (the figures
are in the README), it is the implementation the `openssl` command line uses, and it
ships as a Debian security-maintained system library. `pyca/cryptography` has SM3 and
SM4 but no SM2. Nothing here does I/O: loading the shared library is the only side
effect, done once on first use.

Signatures leave and enter this module in JOSE form, the 64-byte ``r || s`` (as
RFC 7518 §3.4 does for ES256); OpenSSL's DER ``SEQUENCE {r, s}`` stays inside.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from signing.errors import KeyMaterialError, SignatureInvalid, WrongPassphrase

DEFAULT_USER_ID: Final = b"1234567812345678"  # GM/T 0009-2012 §10
COORDINATE_BYTES: Final = 32
# GB/T 32918.5-2017 §4: the recommended curve's order n.
ORDER: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# DER of the AlgorithmIdentifier {id-ecPublicKey, sm2p256v1 (1.2.156.10197.1.301)},
# the form OpenSSL 3 and GM/T 0010 write for SM2 keys.
_EC_PUBLIC_KEY_OID: Final = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
_SM2_CURVE_OID: Final = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301
_ALGORITHM_IDENTIFIER: Final = b"\x30\x13" + _EC_PUBLIC_KEY_OID + _SM2_CURVE_OID
# SubjectPublicKeyInfo up to the uncompressed point (RFC 5480 §2).
_SPKI_PREFIX: Final = b"\x30\x59" + _ALGORITHM_IDENTIFIER + b"\x03\x42\x00"


class _LibCrypto:
    """The libcrypto functions used, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, sz, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.md_ctx_new = fn("EVP_MD_CTX_new", vp)
        self.md_ctx_free = fn("EVP_MD_CTX_free", None, vp)
        self.md_ctx_set_pkey_ctx = fn("EVP_MD_CTX_set_pkey_ctx", None, vp, vp)
        self.pkey_ctx_new_from_pkey = fn("EVP_PKEY_CTX_new_from_pkey", vp, vp, vp, cp)
        self.pkey_ctx_new_from_name = fn("EVP_PKEY_CTX_new_from_name", vp, vp, cp, cp)
        self.pkey_ctx_free = fn("EVP_PKEY_CTX_free", None, vp)
        self.pkey_ctx_set1_id = fn("EVP_PKEY_CTX_set1_id", ci, vp, cp, ci)
        self.keygen_init = fn("EVP_PKEY_keygen_init", ci, vp)
        self.generate = fn("EVP_PKEY_generate", ci, vp, ctypes.POINTER(vp))
        self.verify_init = fn("EVP_DigestVerifyInit_ex", ci, vp, vp, cp, vp, cp, vp, vp)
        self.verify = fn("EVP_DigestVerify", ci, vp, cp, sz, cp, sz)
        self.sign_init = fn("EVP_DigestSignInit_ex", ci, vp, vp, cp, vp, cp, vp, vp)
        self.sign = fn("EVP_DigestSign", ci, vp, cp, ctypes.POINTER(sz), cp, sz)
        self.d2i_pubkey = fn("d2i_PUBKEY", vp, vp, ctypes.POINTER(cp), ctypes.c_long)
        self.d2i_private = fn("d2i_AutoPrivateKey", vp, vp, ctypes.POINTER(cp), ctypes.c_long)
        self.pkey_free = fn("EVP_PKEY_free", None, vp)
        self.pkey_is_a = fn("EVP_PKEY_is_a", ci, vp, cp)
        self.get_bn_param = fn("EVP_PKEY_get_bn_param", ci, vp, cp, ctypes.POINTER(vp))
        self.get_octets = fn(
            "EVP_PKEY_get_octet_string_param", ci, vp, cp, cp, sz, ctypes.POINTER(sz)
        )
        self.bn_bn2binpad = fn("BN_bn2binpad", ci, vp, cp, ci)
        self.bn_clear_free = fn("BN_clear_free", None, vp)
        self.bio_new_mem_buf = fn("BIO_new_mem_buf", vp, cp, ci)
        self.bio_free = fn("BIO_free", ci, vp)
        self.pem_read_private = fn("PEM_read_bio_PrivateKey", vp, vp, vp, vp, cp)
        self.d2i_pkcs8_bio = fn("d2i_PKCS8PrivateKey_bio", vp, vp, vp, vp, cp)
        self.err_clear = fn("ERR_clear_error", None)


_lib: _LibCrypto | None = None
_lib_lock = threading.Lock()


def _libcrypto() -> _LibCrypto:
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                names = ("libcrypto.so.3", ctypes.util.find_library("crypto") or "")
                for name in filter(None, names):
                    try:
                        _lib = _LibCrypto(ctypes.CDLL(name))
                        break
                    except (OSError, AttributeError):
                        continue
                else:
                    raise KeyMaterialError(
                        "SM2 needs OpenSSL 3's libcrypto.so.3 (Debian: apt-get install libssl3)"
                    )
    return _lib


def available() -> bool:
    """Whether SM2 can be used here (OpenSSL 3 libcrypto is present)."""
    try:
        _libcrypto()
    except KeyMaterialError:
        return False
    return True


class _EvpKey:
    """Owns one EVP_PKEY pointer; frees it with the object."""

    __slots__ = ("__weakref__", "pointer")

    def __init__(self, pointer: int) -> None:
        self.pointer = pointer

    def __del__(self) -> None:
        if _lib is not None and self.pointer:
            _lib.pkey_free(self.pointer)
            self.pointer = 0


def _with_digest_ctx(key: _EvpKey, user_id: bytes, sign: bool) -> tuple[int, int]:
    lib = _libcrypto()
    md = lib.md_ctx_new()
    pctx = lib.pkey_ctx_new_from_pkey(None, key.pointer, None)
    if not md or not pctx:
        lib.md_ctx_free(md)
        lib.pkey_ctx_free(pctx)
        raise MemoryError("OpenSSL could not allocate a digest context")
    # GB/T 32918.2 §5.5: the identifier enters Z; OpenSSL takes it on the key context.
    ok = lib.pkey_ctx_set1_id(pctx, user_id, len(user_id)) > 0
    if ok:
        lib.md_ctx_set_pkey_ctx(md, pctx)
        init = lib.sign_init if sign else lib.verify_init
        ok = init(md, None, b"SM3", None, None, key.pointer, None) == 1
    if not ok:
        lib.md_ctx_free(md)
        lib.pkey_ctx_free(pctx)
        lib.err_clear()
        raise KeyMaterialError("OpenSSL refused to set up SM2 with SM3")
    return md, pctx


def _check_user_id(user_id: bytes) -> bytes:
    # GB/T 32918.2 §5.5: ENTL is two bytes of bit length.
    if not isinstance(user_id, bytes) or not 0 < len(user_id) < 8192:
        raise KeyMaterialError("an SM2 user ID is 1 to 8191 bytes")
    return user_id


class Sm2PublicKey:
    """An SM2 public key on the recommended curve, loaded once into OpenSSL."""

    __slots__ = ("_key", "user_id", "x", "y")

    def __init__(self, x: bytes, y: bytes, *, user_id: bytes = DEFAULT_USER_ID) -> None:
        """Load the point (x, y), 32 bytes each.

        Raises:
            KeyMaterialError: wrong sizes, or the point is not on the SM2 curve.
        """
        if len(x) != COORDINATE_BYTES or len(y) != COORDINATE_BYTES:
            raise KeyMaterialError("SM2 coordinates are 32 bytes each")
        lib = _libcrypto()
        der = _SPKI_PREFIX + b"\x04" + x + y
        buffer = ctypes.c_char_p(der)
        pointer = lib.d2i_pubkey(None, ctypes.byref(buffer), len(der))
        if not pointer:
            lib.err_clear()
            raise KeyMaterialError("the point is not on the SM2 curve")
        self._key = _EvpKey(pointer)
        self.x, self.y = x, y
        self.user_id = _check_user_id(user_id)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check a 64-byte ``r || s`` over `data` (SM3 with Z of this key's user ID).

        Raises:
            SignatureInvalid: it does not verify, or r or s is outside [1, n-1].
        """
        if len(signature) != 2 * COORDINATE_BYTES:
            raise SignatureInvalid("an SM2 signature is 64 bytes, r || s")
        r = int.from_bytes(signature[:COORDINATE_BYTES], "big")
        s = int.from_bytes(signature[COORDINATE_BYTES:], "big")
        # GB/T 32918.2 §7.1 B1-B2.
        if not (0 < r < ORDER and 0 < s < ORDER):
            raise SignatureInvalid("SM2 r and s must be in [1, n-1]")
        der = encode_dss_signature(r, s)
        lib = _libcrypto()
        md, pctx = _with_digest_ctx(self._key, self.user_id, sign=False)
        try:
            result = lib.verify(md, der, len(der), data, len(data))
        finally:
            lib.md_ctx_free(md)
            lib.pkey_ctx_free(pctx)
        if result != 1:
            lib.err_clear()
            raise SignatureInvalid("SM2 signature does not verify")

    def spki_der(self) -> bytes:
        """The SubjectPublicKeyInfo DER (what `openssl pkey -pubin` reads)."""
        return _SPKI_PREFIX + b"\x04" + self.x + self.y


class Sm2PrivateKey:
    """An SM2 private key held by OpenSSL; `d` is read out only to write PKCS#8."""

    __slots__ = ("_key", "public")

    def __init__(self, pointer: int, user_id: bytes = DEFAULT_USER_ID) -> None:
        lib = _libcrypto()
        self._key = _EvpKey(pointer)
        if lib.pkey_is_a(pointer, b"SM2") != 1:
            raise KeyMaterialError("the key is not an SM2 key")
        point = ctypes.create_string_buffer(1 + 2 * COORDINATE_BYTES)
        size = ctypes.c_size_t(0)
        if (
            lib.get_octets(pointer, b"encoded-pub-key", point, len(point), ctypes.byref(size)) != 1
            or size.value != len(point)
            or point.raw[0] != 4
        ):
            lib.err_clear()
            raise KeyMaterialError("OpenSSL could not export the SM2 public key")
        raw = point.raw
        self.public = Sm2PublicKey(
            raw[1 : 1 + COORDINATE_BYTES], raw[1 + COORDINATE_BYTES :], user_id=user_id
        )

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        """A fresh key from OpenSSL's CSPRNG."""
        lib = _libcrypto()
        ctx = lib.pkey_ctx_new_from_name(None, b"SM2", None)
        pointer = ctypes.c_void_p()
        try:
            if (
                not ctx
                or lib.keygen_init(ctx) != 1
                or lib.generate(ctx, ctypes.byref(pointer)) != 1
            ):
                lib.err_clear()
                raise KeyMaterialError("OpenSSL could not generate an SM2 key")
        finally:
            lib.pkey_ctx_free(ctx)
        assert pointer.value is not None
        return cls(pointer.value)

    @classmethod
    def from_pkcs8_der(cls, der: bytes) -> Sm2PrivateKey:
        """Load a clear PKCS#8 (or RFC 5915 ECPrivateKey) SM2 key.

        Raises:
            KeyMaterialError: not an SM2 private key.
        """
        lib = _libcrypto()
        buffer = ctypes.c_char_p(der)
        pointer = lib.d2i_private(None, ctypes.byref(buffer), len(der))
        if not pointer:
            lib.err_clear()
            raise KeyMaterialError("not an SM2 private key")
        return cls(pointer)

    @classmethod
    def from_encrypted_pkcs8(cls, data: bytes, passphrase: bytes, *, pem: bool) -> Sm2PrivateKey:
        """Decrypt and load an encrypted PKCS#8 SM2 key (any PBES2 OpenSSL reads).

        The caller has already told a wrong passphrase from a malformed file.

        Raises:
            WrongPassphrase: OpenSSL could not decrypt it.
            KeyMaterialError: it is not an SM2 key.
        """
        if b"\x00" in passphrase:
            raise WrongPassphrase("a passphrase with a NUL byte cannot open an SM2 key")
        lib = _libcrypto()
        bio = lib.bio_new_mem_buf(data, len(data))
        if not bio:
            raise MemoryError("OpenSSL could not allocate a buffer")
        try:
            read = lib.pem_read_private if pem else lib.d2i_pkcs8_bio
            # With no callback, OpenSSL takes the last argument as the passphrase.
            pointer = read(bio, None, None, passphrase)
        finally:
            lib.bio_free(bio)
        if not pointer:
            lib.err_clear()
            raise WrongPassphrase("the passphrase does not decrypt this SM2 key")
        return cls(pointer)

    def private_scalar(self) -> bytes:
        """The 32-byte private scalar d (only for writing encrypted PKCS#8)."""
        lib = _libcrypto()
        bn = ctypes.c_void_p()
        if lib.get_bn_param(self._key.pointer, b"priv", ctypes.byref(bn)) != 1:
            lib.err_clear()
            raise KeyMaterialError("OpenSSL could not export the SM2 private key")
        try:
            out = ctypes.create_string_buffer(COORDINATE_BYTES)
            if lib.bn_bn2binpad(bn, out, COORDINATE_BYTES) != COORDINATE_BYTES:
                raise KeyMaterialError("the SM2 private scalar is not 32 bytes")
            return out.raw
        finally:
            lib.bn_clear_free(bn)

    def pkcs8_der(self) -> bytes:
        """Clear PKCS#8 (RFC 5958): {0, {id-ecPublicKey, sm2p256v1}, ECPrivateKey (RFC 5915)}."""
        point = b"\x04" + self.public.x + self.public.y
        ec_private = _seq(
            b"\x02\x01\x01",
            _tlv(0x04, self.private_scalar()),
            _tlv(0xA1, _tlv(0x03, b"\x00" + point)),
        )
        return _seq(b"\x02\x01\x00", _ALGORITHM_IDENTIFIER, _tlv(0x04, ec_private))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte ``r || s`` SM2 signature of `data` (SM3, Z of the public key's ID)."""
        lib = _libcrypto()
        md, pctx = _with_digest_ctx(self._key, self.public.user_id, sign=True)
        try:
            size = ctypes.c_size_t(80)
            out = ctypes.create_string_buffer(80)
            if lib.sign(md, out, ctypes.byref(size), data, len(data)) != 1:
                lib.err_clear()
                raise KeyMaterialError("OpenSSL could not make an SM2 signature")
        finally:
            lib.md_ctx_free(md)
            lib.pkey_ctx_free(pctx)
        r, s = decode_dss_signature(out.raw[: size.value])
        return r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))
