"""The lean codecs on CPython: MicroPython's `cryptolib.aes` over
`cryptography`, and the C primitives glwire runs on under CPython.

The lean codec imports `cryptolib.aes`; on CPython this shim stands in with
the same constructor `aes(key, mode, iv=None)` and the same one-shot
`encrypt(in_buf, out_buf=None)` / `decrypt(...)` methods.  Like the real one
it works on whole 16-byte blocks only and an object is used for a single
direction.  Mode 1 is ECB, mode 2 is CBC (MicroPython's MODE_ECB/MODE_CBC).

`FAST` is what glwire.use_portable() swaps in for its portable primitives
under CPython (same signatures, same results: the differential tests run
both): CRC-16/CCITT-FALSE by `binascii.crc_hqx`, HMAC-SHA256 by `hmac`,
`hmac.compare_digest`, and per key (on `Keys.ctx`, made on first use) the
HMAC's inner and outer SHA-256 states after the key block (RFC 2104 sec. 4:
"precompute" them) and one AES-ECB context each way, over which CBC is
chained here (SP 800-38A 6.2): no cipher object per frame.  ECB contexts
hold no state between whole blocks, so sharing one is safe (also between
threads: each call is one whole-block update).  `AesContext` serves the
host's SIA DC-09 codec the same way.
"""

import hashlib
import hmac
from binascii import crc_hqx

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1
MODE_CBC = 2


class aes:  # noqa: N801 - the name MicroPython gives it
    def __init__(self, key, mode, iv=None):
        key = bytes(key)
        if len(key) not in (16, 24, 32):
            raise ValueError("key")
        if mode == MODE_ECB:
            m = modes.ECB()
        elif mode == MODE_CBC:
            m = modes.CBC(bytes(iv) if iv is not None else bytes(16))
        else:
            raise ValueError("mode")
        self._cipher = Cipher(algorithms.AES(key), m)
        self._ctx = None
        self._dir = None

    def _run(self, direction, in_buf, out_buf):
        if len(in_buf) % 16:
            raise ValueError("blksize")
        if self._ctx is None:
            self._dir = direction
            self._ctx = (self._cipher.encryptor() if direction == "e"
                         else self._cipher.decryptor())
        elif self._dir != direction:
            raise OSError("can't encrypt & decrypt")
        out = self._ctx.update(bytes(in_buf))
        if out_buf is None:
            return out
        out_buf[:len(out)] = out
        return None

    def encrypt(self, in_buf, out_buf=None):
        return self._run("e", in_buf, out_buf)

    def decrypt(self, in_buf, out_buf=None):
        return self._run("d", in_buf, out_buf)


# -- the C primitives glwire runs on under CPython ------------------------------------

_BLOCK = 16
_HMAC_BLOCK = 64  # SHA-256's block size


def crc16(data, start=0, end=None):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of data[start:end]."""
    return crc_hqx(memoryview(data)[start:end], 0xFFFF)


def hmac_sha256(key, data):
    return hmac.digest(bytes(key), data, "sha256")


equal_ct = hmac.compare_digest


class AesContext:
    """One AES key's ECB contexts, each way, and CBC chained over them (SP
    800-38A 6.2): for a key used again and again, no cipher object per
    message.  Used for the native protocol's keys (KeyContext) and for
    SIA DC-09's (protocol/dc09.py)."""

    def __init__(self, key):
        a = algorithms.AES(bytes(key))
        self.ecb_encrypt = Cipher(a, modes.ECB()).encryptor().update
        self.ecb_decrypt = Cipher(a, modes.ECB()).decryptor().update

    def cbc(self, iv, data, encrypt):
        """AES-CBC of ``data`` (whole blocks) from ``iv``; bytes-like in,
        bytes (decrypt) or bytearray (encrypt) out."""
        n = len(data)
        if n % _BLOCK:
            raise ValueError("blksize")
        if not encrypt:
            # P_i = D(C_i) xor C_(i-1), C_0 = IV: one ECB call for every
            # block, one XOR over the whole text as an integer.
            d = self.ecb_decrypt(bytes(data))
            prev = bytes(iv) + bytes(data[:n - _BLOCK])
            return (int.from_bytes(d, "big") ^ int.from_bytes(prev, "big")).to_bytes(n, "big")
        # C_i = E(P_i xor C_(i-1)): one block at a time, the chain is sequential
        out = bytearray(n)
        prev = int.from_bytes(iv, "big")
        enc = self.ecb_encrypt
        for i in range(0, n, _BLOCK):
            blk = enc((int.from_bytes(data[i:i + _BLOCK], "big") ^ prev).to_bytes(_BLOCK, "big"))
            out[i:i + _BLOCK] = blk
            prev = int.from_bytes(blk, "big")
        return out


class KeyContext(AesContext):
    """What one native account's keys keep to go faster: the AES contexts of
    the cipher key, and the HMAC's two hash states after the MAC key block."""

    def __init__(self, enc_key, mac_key):
        super().__init__(enc_key)
        k = bytes(mac_key)
        if len(k) > _HMAC_BLOCK:
            k = hashlib.sha256(k).digest()
        k = k.ljust(_HMAC_BLOCK, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))


def _ctx(keys):
    c = keys.ctx
    if c is None:
        c = keys.ctx = KeyContext(keys.enc, keys.mac)
    return c


def mac(keys, data):
    """glwire.frame_mac: HMAC-SHA256 under keys.mac, first 16 bytes."""
    c = _ctx(keys)
    h = c.inner.copy()
    h.update(data)
    o = c.outer.copy()
    o.update(h.digest())
    return o.digest()[:16]


def cbc(keys, iv, data, encrypt):
    """glwire.aes_cbc: AES-CBC under keys.enc over the key's contexts;
    `data` is whole blocks (the frame's body length is checked to be a
    multiple of 16 before anything is decrypted)."""
    return _ctx(keys).cbc(iv, data, encrypt)


FAST = (crc16, hmac_sha256, equal_ct, mac, cbc)
