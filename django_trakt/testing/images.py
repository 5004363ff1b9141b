"""Real PNG bytes for avatars and posters, written by hand with zlib and struct.

A site that caches Trakt's images (Trakt forbids hotlinking) must be tested against
bytes that image libraries accept, not a placeholder string; Pillow is not a
dependency, so the emulator writes a minimal valid PNG itself: a solid-colour
square whose colour is derived from the name, so different users look different.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC over type and data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A truecolour (8-bit RGB) PNG of one colour."""
    if width < 1 or height < 1:
        raise ValueError("a PNG needs at least one pixel")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None) for each scanline
    idat = zlib.compress(row * height, 9)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def colour_for(name: str) -> tuple[int, int, int]:
    """A stable, mid-bright colour for a name, so each image is recognisable."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return (64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160)


@lru_cache(maxsize=256)
def avatar_png(name: str, size: int = 64) -> bytes:
    """A square avatar for ``name``."""
    return solid_png(size, size, colour_for("avatar:" + name))


@lru_cache(maxsize=256)
def poster_png(name: str) -> bytes:
    """A 2:3 poster for ``name`` (Trakt's posters are portrait)."""
    return solid_png(40, 60, colour_for("poster:" + name))
