"""RTMP handshake, both the plain echo and the Flash-era digest ("complex") form.

Wire: C0 (1 byte, version 3) + C1 (1536 bytes) from the client, S0 + S1 + S2 back,
then C2 (1536 bytes). C1/S1 = time (4) + version or zero (4) + 1528 random bytes.

Digest form, as FFmpeg's libavformat/rtmpproto.c and rtmpdigest.c do it: a 32-byte
HMAC-SHA256 digest sits inside the 1536-byte block at
``sum(block[base:base + 4]) % 728 + base + 4`` where ``base`` is 8 (scheme used by
FFmpeg's plain RTMP client) or 772 (scheme used for RTMPE and some Flash players);
the digest covers the block minus its own 32 bytes.

- Client C1 digest key: the 30-byte "Genuine Adobe Flash Player 001".
- Server S1 digest key: the 36-byte "Genuine Adobe Flash Media Server 001".
- S2: random bytes whose last 32 bytes are
  HMAC(key=HMAC(full 68-byte server key, client digest), S2[:-32]).
  FFmpeg checks this (and the S1 digest) when it plays with a digest C1.
- C2: the same with the 62-byte full player key and the server digest.

Servers do not verify C2 strictly (FFmpeg's listener only logs a mismatch), and neither
do we: a replayed capture must pass whatever S1 this server produced.

Sans-IO: randomness and the epoch are injected, so tests are deterministic.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Callable

from .errors import RtmpProtocolError

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
DIGEST_SIZE = 32
# Offsets of the 4 bytes that locate the digest, in the order FFmpeg's client checks S1.
DIGEST_SCHEMES = (772, 8)

_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
PLAYER_KEY_FULL = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
PLAYER_KEY = PLAYER_KEY_FULL[:30]
SERVER_KEY_FULL = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
SERVER_KEY = SERVER_KEY_FULL[:36]

# The version field of our S1 when we answer a digest C1; FFmpeg only needs byte 0 >= 3.
SERVER_VERSION = bytes((13, 14, 10, 13))
# The version FFmpeg's client writes into C1 (RTMP_CLIENT_VER1..4).
CLIENT_VERSION = bytes((9, 0, 124, 2))

RandomBytes = Callable[[int], bytes]


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(block: bytes | bytearray, base: int) -> int:
    """Where the 32-byte digest sits for scheme ``base`` (8 or 772)."""
    return sum(block[base : base + 4]) % 728 + base + 4


def compute_digest(block: bytes, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of the block without the 32 bytes at ``offset``."""
    return _hmac(key, block[:offset] + block[offset + DIGEST_SIZE :])


def find_digest(
    block: bytes, key: bytes, schemes: tuple[int, ...] = DIGEST_SCHEMES
) -> tuple[int, int] | None:
    """(scheme, offset) of a valid digest in ``block``, or None."""
    for base in schemes:
        off = digest_offset(block, base)
        if hmac.compare_digest(compute_digest(block, off, key), block[off : off + DIGEST_SIZE]):
            return base, off
    return None


def imprint_digest(block: bytearray, base: int, key: bytes) -> int:
    """Write a digest into ``block`` using scheme ``base``; returns its offset."""
    off = digest_offset(block, base)
    block[off : off + DIGEST_SIZE] = compute_digest(bytes(block), off, key)
    return off


def response_block(random_bytes: RandomBytes, peer_digest: bytes, key_full: bytes) -> bytes:
    """S2 (or C2) in the digest form: random data signed with a key derived from
    the peer's digest."""
    body = _checked_random(random_bytes, HANDSHAKE_SIZE - DIGEST_SIZE)
    return body + _hmac(_hmac(key_full, peer_digest), body)


def _checked_random(random_bytes: RandomBytes, n: int) -> bytes:
    data = random_bytes(n)
    if len(data) != n:  # a programming error in the injected source, not a peer error
        raise ValueError(f"random source returned {len(data)} bytes, wanted {n}")
    return data


class _State(enum.Enum):
    C0 = 0
    C1 = 1
    C2 = 2
    DONE = 3


class ServerHandshake:
    """Server side. Feed bytes with :meth:`receive_data`; once C2 is in, it returns the
    bytes that follow C2 (the start of the chunk stream), None until then."""

    def __init__(self, random_bytes: RandomBytes = os.urandom, epoch: int = 0) -> None:
        self._random = random_bytes
        self._epoch = epoch & 0xFFFFFFFF
        self._state = _State.C0
        self._buf = bytearray()
        self._out = bytearray()
        self._s1 = b""
        self._s1_digest = b""
        #: True when the client sent a valid digest C1 and we answered in kind.
        self.digest = False
        #: Whether C2 echoed our S1 as the protocol asks (informational only).
        self.c2_ok = False

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> bytes | None:
        """Consume handshake bytes; return whatever lies beyond C2 (None until then)."""
        if self._state is _State.DONE:
            return bytes(data)
        self._buf += data
        if self._state is _State.C0 and self._buf:
            # Checked on the first byte so random junk is rejected at once.
            if self._buf[0] != RTMP_VERSION:
                raise RtmpProtocolError("bad_version", f"C0 version {self._buf[0]}")
            del self._buf[:1]
            self._state = _State.C1
        if self._state is _State.C1 and len(self._buf) >= HANDSHAKE_SIZE:
            c1 = bytes(self._buf[:HANDSHAKE_SIZE])
            del self._buf[:HANDSHAKE_SIZE]
            self._answer_c1(c1)
            self._state = _State.C2
        if self._state is _State.C2 and len(self._buf) >= HANDSHAKE_SIZE:
            c2 = bytes(self._buf[:HANDSHAKE_SIZE])
            rest = bytes(self._buf[HANDSHAKE_SIZE:])
            self._buf = bytearray()
            self._check_c2(c2)
            self._state = _State.DONE
            return rest
        return None

    def _answer_c1(self, c1: bytes) -> None:
        # A zero version field means a plain client; otherwise look for its digest,
        # scheme 8 first as FFmpeg's client uses it.
        found = find_digest(c1, PLAYER_KEY, (8, 772)) if c1[4:8] != bytes(4) else None
        head = self._epoch.to_bytes(4, "big")
        if found is None:
            # Plain handshake: S1 = time + zero + random, S2 = C1 echoed.
            s1 = head + bytes(4) + _checked_random(self._random, HANDSHAKE_SIZE - 8)
            s2 = c1
        else:
            self.digest = True
            base, client_off = found  # answer with the scheme the client used
            block = bytearray(
                head + SERVER_VERSION + _checked_random(self._random, HANDSHAKE_SIZE - 8)
            )
            off = imprint_digest(block, base, SERVER_KEY)
            s1 = bytes(block)
            self._s1_digest = s1[off : off + DIGEST_SIZE]
            client_digest = c1[client_off : client_off + DIGEST_SIZE]
            s2 = response_block(self._random, client_digest, SERVER_KEY_FULL)
        self._s1 = s1
        self._out += bytes((RTMP_VERSION,)) + s1 + s2

    def _check_c2(self, c2: bytes) -> None:
        # An echo of S1 is what plain clients send, and what FFmpeg sends when it
        # publishes (it only signs C2 when it plays).
        self.c2_ok = c2[8:] == self._s1[8:]
        if self.digest and not self.c2_ok:
            key = _hmac(PLAYER_KEY_FULL, self._s1_digest)
            self.c2_ok = hmac.compare_digest(_hmac(key, c2[:-DIGEST_SIZE]), c2[-DIGEST_SIZE:])


class ClientHandshake:
    """Client side, for tests, benchmarks and tools. With ``digest=True`` it behaves
    like FFmpeg's client and verifies the server's S1 digest and S2 signature."""

    def __init__(
        self,
        random_bytes: RandomBytes = os.urandom,
        epoch: int = 0,
        *,
        digest: bool = True,
        scheme: int = 8,
    ) -> None:
        self._random = random_bytes
        self._digest = digest
        block = bytearray(
            (epoch & 0xFFFFFFFF).to_bytes(4, "big")
            + (CLIENT_VERSION if digest else bytes(4))
            + _checked_random(random_bytes, HANDSHAKE_SIZE - 8)
        )
        self._c1_digest = b""
        if digest:
            off = imprint_digest(block, scheme, PLAYER_KEY)
            self._c1_digest = bytes(block[off : off + DIGEST_SIZE])
        self.c1 = bytes(block)
        self._buf = bytearray()
        self._done = False
        #: Set once S1 and S2 are checked (digest mode) or accepted (plain mode).
        self.server_verified = False

    @property
    def complete(self) -> bool:
        return self._done

    def initial_bytes(self) -> bytes:
        return bytes((RTMP_VERSION,)) + self.c1

    def receive_data(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed S0S1S2 bytes; returns (C2 to send or b"", bytes beyond S2)."""
        if self._done:
            return b"", bytes(data)
        self._buf += data
        need = 1 + 2 * HANDSHAKE_SIZE
        if len(self._buf) < need:
            return b"", b""
        if self._buf[0] != RTMP_VERSION:
            raise RtmpProtocolError("bad_version", f"S0 version {self._buf[0]}")
        s1 = bytes(self._buf[1 : 1 + HANDSHAKE_SIZE])
        s2 = bytes(self._buf[1 + HANDSHAKE_SIZE : need])
        rest = bytes(self._buf[need:])
        self._buf = bytearray()
        self._done = True
        if not self._digest:
            self.server_verified = s2[8:] == self.c1[8:]
            return s1, rest
        found = find_digest(s1, SERVER_KEY)
        if found is None:
            raise RtmpProtocolError("bad_server_digest")
        server_off = found[1]
        key = _hmac(SERVER_KEY_FULL, self._c1_digest)
        if not hmac.compare_digest(_hmac(key, s2[:-DIGEST_SIZE]), s2[-DIGEST_SIZE:]):
            raise RtmpProtocolError("bad_server_signature")
        self.server_verified = True
        server_digest = s1[server_off : server_off + DIGEST_SIZE]
        return response_block(self._random, server_digest, PLAYER_KEY_FULL), rest
