"""AUTOMATIC1111 (and Forge/SD.Next, which copy it): ``parameters`` infotext, EXIF UserComment.

The infotext is free text, so it is parsed the way A1111 itself parses it back
(``parse_generation_parameters``): prompt lines, an optional ``Negative prompt:`` block, and a last
line that counts as parameters only when it holds at least three ``key: value`` pairs — a prompt
that happens to contain a colon must stay a prompt.
"""

from __future__ import annotations

import json
import math
import re

from sdeval.inputs.metadata._common import as_float, as_int
from sdeval.inputs.metadata.types import GenerationMetadata, LoraInfo

#: A1111's own pattern (modules/infotext_utils.py, ``re_param_code``); quoted values are JSON.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
#: the most digits a size side may have (a file may say 1 followed by 400 zeros)
MAX_SIZE_DIGITS = 6
#: latent grid of SD models: A1111's ``opt_f``.
OPT_F = 8
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


def _is_key_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_ -/"


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def param_pairs(line: str) -> list[tuple[str, str]]:
    """What ``RE_PARAM.findall(line)`` returns, in linear time.

    The regex is A1111's, but Python's backtracking makes it quadratic on a long line without
    colons (16 KB took 1.4 s, a 64 MB chunk hours). Every match ends at its key's colon, and a key
    is the run of key characters (word, space, ``-``, ``/``) just before it, from its first word
    character, at least two characters long; so each colon is looked at once, and the run before
    it is walked once. The value is a JSON-quoted string when one ends at a comma or the end,
    else everything up to the next comma.
    """
    out: list[tuple[str, str]] = []
    n = len(line)
    pos = 0
    while pos < n:
        colon = line.find(":", pos)
        if colon < 0:
            break
        start = colon
        while start > pos and _is_key_char(line[start - 1]):
            start -= 1
        key_start = start
        while key_start < colon and not _is_word_char(line[key_start]):
            key_start += 1
        if colon - key_start >= 2:
            value_start = colon + 1
            while value_start < n and line[value_start].isspace():
                value_start += 1
            end = _quoted_end(line, value_start)
            if end is None:
                comma = line.find(",", value_start)
                end = n if comma < 0 else comma
            out.append((line[key_start:colon], line[value_start:end]))
            pos = end + 1
        else:
            pos = colon + 1
    return out


def _quoted_end(line: str, i: int) -> int | None:
    """End (exclusive) of a JSON-quoted value at ``i`` followed by a comma or the end, else None."""
    n = len(line)
    if i >= n or line[i] != '"':
        return None
    j = i + 1
    while j < n:
        ch = line[j]
        if ch == "\\":
            if j + 1 >= n:
                return None
            j += 2
            continue
        if ch == '"':
            break
        j += 1
    if j >= n or j == i + 1 or (j + 1 < n and line[j + 1] != ","):
        return None
    return j + 1


def is_params_line(line: str) -> bool:
    """A1111's test for the parameters line: at least three ``key: value`` pairs (a prompt line
    with a colon or two stays a prompt)."""
    return len(param_pairs(line)) >= 3


def parse_params_line(line: str) -> dict[str, str]:
    """``Steps: 20, Sampler: Euler a, ...`` as a dict (first occurrence of a key wins)."""
    params: dict[str, str] = {}
    for key, value in param_pairs(line):
        params.setdefault(key.strip(), _unquote(value.strip()))
    return params


#: ``<lora:name:te_weight:unet_weight...>`` (A1111 extra networks; named ``te=``/``unet=`` too)
#: bounded (a name of 256 characters, 8 parameters of 64): hostile text full of unclosed
#: ``<lora:`` must not make the search quadratic
_LORA_TAG = re.compile(r"<lora:([^:<>]{1,256})((?::[^:<>]{0,64}){0,8})>", re.IGNORECASE)
MAX_PROMPT_LORAS = 256


def prompt_loras(prompt: str | None) -> tuple[LoraInfo, ...]:
    """The LoRAs an A1111 prompt applies with ``<lora:...>`` tags: the first number is the text
    encoder (CLIP) weight, the second the UNet (model) weight, defaulting to the first."""
    if not prompt or "<lora:" not in prompt.lower():
        return ()
    found: list[LoraInfo] = []
    for match in _LORA_TAG.finditer(prompt):
        params = [p.strip() for p in match.group(2).split(":")[1:]]
        named = dict(p.split("=", 1) for p in params if "=" in p)
        positional = [p for p in params if "=" not in p]
        te = as_float(named.get("te", positional[0] if positional else "1"))
        unet = as_float(named.get("unet", positional[1] if len(positional) > 1 else None))
        found.append(LoraInfo(name=match.group(1).strip(), strength_model=unet if unet is not None else te,
                              strength_clip=te))
        if len(found) >= MAX_PROMPT_LORAS:
            break
    return tuple(found)


def parse_a1111(text: str, *, source: str = "a1111") -> GenerationMetadata:
    """Parse an A1111 infotext; ``source`` lets tools that write the same text (Fooocus) say so."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    params: dict[str, str] = {}
    if lines and is_params_line(lines[-1]):
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
    problems: list[str] = []
    size = _size(params.get("Size"), "Size", problems)
    if size:
        width, height = size
    output = size
    first_pass = _size(params.get("First pass size"), "First pass size", problems)
    if size and first_pass is not None and size[0] > 0 and size[1] > 0:
        # before A1111 1.0 (Jan 2023) ``Size`` was the final size and ``First pass size`` the base;
        # 0x0 meant "computed": A1111 converts it back the same way (restore_old_hires_fix_params)
        width, height = (first_pass if first_pass[0] and first_pass[1]
                         else _old_first_pass(*size))
    elif size:
        output = hires_output_size(size[0], size[1], params.get("Hires upscale"),
                                   params.get("Hires resize"))
    return GenerationMetadata(
        source=source,
        prompt=prompt or None,
        negative_prompt="\n".join(negative_lines).strip() if negative_lines is not None else None,
        seed=as_int(params.get("Seed")),
        width=width,
        height=height,
        output_width=output[0] if output else None,
        output_height=output[1] if output else None,
        steps=as_int(params.get("Steps")),
        cfg=as_float(params.get("CFG scale")),
        sampler=params.get("Sampler") or None,
        scheduler=params.get("Schedule type") or None,
        model=params.get("Model") or None,
        model_hash=params.get("Model hash") or None,
        vae=params.get("VAE") or None,
        loras=prompt_loras(prompt),
        warnings=tuple(problems),
    )


def _size(text: str | None, key: str = "Size", problems: list[str] | None = None) -> tuple[int, int] | None:
    """``WxH`` as ints; a side of more than :data:`MAX_SIZE_DIGITS` digits is a warning on this
    field only (Python refuses to parse ints past 4,300 digits; nothing is that big)."""
    size = RE_SIZE.match(text or "")
    if not size:
        return None
    if max(len(size.group(1)), len(size.group(2))) > MAX_SIZE_DIGITS:
        if problems is not None:
            problems.append(f"a1111: '{key}' is out of range ({len(text or '')} characters); ignored")
        return None
    return int(size.group(1)), int(size.group(2))


def _old_first_pass(width: int, height: int) -> tuple[int, int]:
    """A1111's ``old_hires_fix_first_pass_dimensions``: about 512x512 pixels, multiples of 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def hires_output_size(width: int, height: int, upscale: str | None, resize: str | None
                      ) -> tuple[int, int] | None:
    """The saved size of an A1111 txt2img from its base ``Size`` and hires-fix parameters.

    As A1111 computes it (modules/processing.py, ``calculate_target_resolution`` and
    ``sample_hr_pass``): the target is ``int(size * Hires upscale)``, or ``Hires resize: WxH``
    where a 0 side keeps the aspect ratio (``other * h // w``); when both sides are given the
    upscale covers the box and the latent is cropped by ``truncate = (target - box) // 8`` cells.
    The second pass runs on a ``target // 8`` latent, so the image is ``(target // 8 - truncate)
    * 8``. No hires parameters: the base size. Unreadable hires parameters: None (unknown).
    """
    if width <= 0 or height <= 0:
        return None
    resize_to = _size(resize)
    if resize is not None and resize_to is None:
        return None
    if resize_to is not None and resize_to != (0, 0):
        rx, ry = resize_to
        trunc_x = trunc_y = 0
        if ry == 0:
            tx, ty = rx, rx * height // width
        elif rx == 0:
            tx, ty = ry * width // height, ry
        else:
            if width / height < rx / ry:
                tx, ty = rx, rx * height // width
            else:
                tx, ty = ry * width // height, ry
            trunc_x, trunc_y = (tx - rx) // OPT_F, (ty - ry) // OPT_F
        out = (tx // OPT_F - trunc_x) * OPT_F, (ty // OPT_F - trunc_y) * OPT_F
        return out if out[0] > 0 and out[1] > 0 else None
    if upscale is None:
        return width, height
    scale = as_float(upscale)
    if scale is None or scale <= 0 or not math.isfinite(width * height * scale * scale):
        return None
    tx, ty = int(width * scale) // OPT_F * OPT_F, int(height * scale) // OPT_F * OPT_F
    return (tx, ty) if tx > 0 and ty > 0 else None


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
