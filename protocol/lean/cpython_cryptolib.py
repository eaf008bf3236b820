"""MicroPython's `cryptolib.aes`, for CPython, over `cryptography`.

The lean codec imports `cryptolib.aes`; on CPython this shim stands in with
the same constructor `aes(key, mode, iv=None)` and the same one-shot
`encrypt(in_buf, out_buf=None)` / `decrypt(...)` methods.  Like the real one
it works on whole 16-byte blocks only and an object is used for a single
direction.  Mode 1 is ECB, mode 2 is CBC (MicroPython's MODE_ECB/MODE_CBC).
"""

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
