"""AUTOMATIC1111 (and Forge/SD.Next, which copy it): ``parameters`` infotext, EXIF UserComment.

The infotext is free text, so it is parsed the way A1111 itself parses it back
(``parse_generation_parameters``): prompt lines, an optional ``Negative prompt:`` block, and a last
line that counts as parameters only when it holds at least three ``key: value`` pairs — a prompt
that happens to contain a colon must stay a prompt.
"""

from __future__ import annotations

import json
import re

from sdeval.inputs.metadata._common import as_float, as_int
from sdeval.inputs.metadata.types import GenerationMetadata

#: A1111's own pattern (modules/infotext_utils.py, ``re_param_code``); quoted values are JSON.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
NEGATIVE_PREFIX = "Negative prompt:"

UNICODE_PREFIX = b"UNICODE\0"
ASCII_PREFIX = b"ASCII\0\0\0"
JIS_PREFIX = b"JIS\0\0\0\0\0"
UNDEFINED_PREFIX = b"\0" * 8


def _unquote(value: str) -> str:
    """A1111 writes values holding commas or quotes as JSON strings."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        return loaded if isinstance(loaded, str) else value
    return value


def parse_params_line(line: str) -> dict[str, str]:
    """``Steps: 20, Sampler: Euler a, ...`` as a dict (first occurrence of a key wins)."""
    params: dict[str, str] = {}
    for key, value in RE_PARAM.findall(line):
        params.setdefault(key.strip(), _unquote(value.strip()))
    return params


def parse_a1111(text: str, *, source: str = "a1111") -> GenerationMetadata:
    """Parse an A1111 infotext; ``source`` lets tools that write the same text (Fooocus) say so."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    params: dict[str, str] = {}
    if lines and len(RE_PARAM.findall(lines[-1])) >= 3:
        params = parse_params_line(lines.pop())
    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if negative_lines is None and stripped.startswith(NEGATIVE_PREFIX):
            negative_lines = []
            stripped = stripped[len(NEGATIVE_PREFIX):].strip()
        (negative_lines if negative_lines is not None else prompt_lines).append(stripped)
    prompt = "\n".join(prompt_lines).strip()

    width = height = None
    size = RE_SIZE.match(params.get("Size", ""))
    if size:
        width, height = int(size.group(1)), int(size.group(2))
    return GenerationMetadata(
        source=source,
        prompt=prompt or None,
        negative_prompt="\n".join(negative_lines).strip() if negative_lines is not None else None,
        seed=as_int(params.get("Seed")),
        width=width,
        height=height,
        steps=as_int(params.get("Steps")),
        cfg=as_float(params.get("CFG scale")),
        sampler=params.get("Sampler") or None,
        scheduler=params.get("Schedule type") or None,
        model=params.get("Model") or None,
        model_hash=params.get("Model hash") or None,
    )


def _utf16(body: bytes) -> str:
    """UTF-16 in either byte order: piexif writes big-endian, others follow the EXIF byte order."""
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", "replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", "replace")
    body = body[: len(body) // 2 * 2]
    sample = body[:8192]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    if even_zeros != odd_zeros:  # ASCII-range text: the zero byte is the high one
        return body.decode("utf-16-be" if even_zeros > odd_zeros else "utf-16-le", "replace")
    for codec in ("utf-16-be", "utf-16-le"):  # no hint (e.g. all CJK): the one that decodes cleanly
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    return body.decode("utf-16-be", "replace")


def decode_user_comment(data: bytes | str) -> str:
    """The text of an EXIF UserComment: 8-byte charset prefix (UNICODE/ASCII/JIS/none) + payload."""
    if isinstance(data, str):  # some writers store it as an ASCII-typed tag
        for prefix in ("UNICODE\0", "ASCII\0\0\0"):
            if data.startswith(prefix):
                data = data[len(prefix):]
        return data.rstrip("\0")
    if data.startswith(UNICODE_PREFIX):
        text = _utf16(data[len(UNICODE_PREFIX):])
    elif data.startswith(ASCII_PREFIX):
        text = data[len(ASCII_PREFIX):].decode("utf-8", "replace")
    elif data.startswith(JIS_PREFIX):
        text = data[len(JIS_PREFIX):].decode("cp932", "replace")
    else:
        if data.startswith(UNDEFINED_PREFIX):
            data = data[len(UNDEFINED_PREFIX):]
        text = data.decode("utf-8", "replace")
    return text.rstrip("\0")
