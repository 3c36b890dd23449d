"""PNG text chunks written without re-encoding the image (A1111's ``parameters`` infotext)."""

from __future__ import annotations

import struct
import zlib


def png_with_text(png: bytes, key: str, value: str) -> bytes:
    """``png`` with a tEXt (latin-1) or iTXt chunk ``key`` after IHDR, unless one is there."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) < 33:
        return png
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if kind in (b"tEXt", b"iTXt", b"zTXt") and png[pos + 8:pos + 8 + len(key) + 1] == key.encode() + b"\0":
            return png
        if kind == b"IEND":
            break
        pos += 12 + length
    try:
        kind, data = b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:
        kind, data = b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    cut = 8 + 12 + ihdr_len
    return png[:cut] + chunk + png[cut:]
