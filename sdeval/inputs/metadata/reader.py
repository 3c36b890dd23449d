"""Find and read whatever generation metadata an image carries, whichever tool wrote it.

Embedded formats are tried in a fixed priority (most specific first: a ComfyUI graph says more than
an infotext, and some savers write both); the first that yields anything wins, and warnings from
the ones that failed are kept. A caption sidecar only fills a missing prompt. Metadata is untrusted
input: JSON over ``max_json_bytes`` is not parsed, raw text is kept truncated, and nothing here
raises on bad metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from PIL import Image

from sdeval.inputs.metadata._common import dedupe, load_json
from sdeval.inputs.metadata.a1111 import decode_user_comment, is_params_line, parse_a1111
from sdeval.inputs.metadata.comfyui import parse_comfyui
from sdeval.inputs.metadata.fooocus import parse_fooocus
from sdeval.inputs.metadata.invokeai import (parse_dream, parse_invokeai_metadata,
                                            parse_sd_metadata)
from sdeval.inputs.metadata.novelai import is_novelai, parse_novelai
from sdeval.inputs.metadata.sidecar import read_sidecar
from sdeval.inputs.metadata.types import GenerationMetadata

TAG_EXIF_IFD = 0x8769
TAG_USER_COMMENT = 0x9286
TAG_MAKER_NOTE = 0x927C
TAG_MODEL = 0x0110
TAG_SOFTWARE = 0x0131
COMFY_EXIF_PREFIX = "prompt:"

_FIELDS = ("prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg", "sampler",
           "scheduler", "model", "model_hash", "vae")


def _has_values(meta: GenerationMetadata) -> bool:
    return bool(meta.samplers) or any(getattr(meta, name) is not None for name in _FIELDS)


def _fix_mojibake(text: str) -> str:
    """tEXt chunks are latin-1 by spec, but some tools write UTF-8 there: recover it when clean."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _text_chunks(image: Image.Image) -> dict[str, str]:
    """PNG tEXt/iTXt/zTXt (and any other string) entries of ``image.info``."""
    chunks: dict[str, str] = {}
    for key, value in image.info.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, str):
            # iTXt is a str subclass already decoded as UTF-8; plain tEXt may need repair
            chunks[key] = str(value) if type(value) is not str else _fix_mojibake(value)
        elif key == "comment" and isinstance(value, bytes):  # JPEG COM segment
            chunks[key] = value.decode("utf-8", "replace")
    return chunks


def _exif_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.rstrip("\0")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\0")
    return None


def header_exif(image: Image.Image) -> Image.Exif:
    from sdeval.inputs.decode import header_exif as _header_exif

    return _header_exif(image)


def _exif_texts(image: Image.Image, warnings: list[str]) -> dict[str, str]:
    """The EXIF entries generators use for text, under ``exif:`` keys."""
    found: dict[str, str] = {}
    try:
        exif = header_exif(image)
    except Exception as exc:  # corrupt EXIF of any shape: a warning, not a crash
        warnings.append(f"exif: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
        return found
    for tag, name in ((TAG_MODEL, "Model"), (TAG_SOFTWARE, "Software"),
                      (TAG_MAKER_NOTE, "MakerNote")):
        text = _exif_text(exif.get(tag))
        if text:
            found[f"exif:{name}"] = text
    if TAG_USER_COMMENT in exif:  # Fooocus puts its text in IFD0
        value = exif.get(TAG_USER_COMMENT)
        if isinstance(value, (bytes, str)):
            text = decode_user_comment(value)
            if text:
                found["exif:0x9286"] = text
    if TAG_EXIF_IFD in exif:
        try:
            sub = exif.get_ifd(TAG_EXIF_IFD)
        except Exception as exc:
            warnings.append(f"exif: unreadable Exif IFD ({type(exc).__name__}: {str(exc)[:120]})")
            sub = {}
        value = sub.get(TAG_USER_COMMENT)
        if isinstance(value, (bytes, str)):
            text = decode_user_comment(value)
            if text:
                found["exif:UserComment"] = text
    return found


def _infotext(text: str, scheme: str | None, fooocus: bool, max_json_bytes: int
              ) -> GenerationMetadata:
    """EXIF/COM text: Fooocus JSON, or an A1111 infotext (from Fooocus when its marks say so)."""
    if text.lstrip().startswith("{") or (scheme or "").strip().lower() == "fooocus":
        return parse_fooocus(text, scheme, max_json_bytes=max_json_bytes)
    return parse_a1111(text, source="fooocus" if fooocus else "a1111")


def _candidates(text: dict[str, str], exif: dict[str, str], max_json_bytes: int,
                image_size: tuple[int, int] | None = None
                ) -> Iterator[Callable[[], GenerationMetadata]]:
    """Readers to try, most specific first; each is called only if the ones before gave nothing."""
    prompt_chunk = text.get("prompt")
    if prompt_chunk is not None and prompt_chunk.lstrip()[:1] in ("{", "["):
        yield lambda: parse_comfyui(prompt_chunk, max_json_bytes=max_json_bytes,
                                    image_size=image_size)
    if "invokeai_metadata" in text:
        yield lambda: _json_reader(text["invokeai_metadata"], "invokeai 'invokeai_metadata'",
                                   parse_invokeai_metadata, max_json_bytes)
    if "sd-metadata" in text:
        yield lambda: _json_reader(text["sd-metadata"], "invokeai 'sd-metadata'",
                                   parse_sd_metadata, max_json_bytes)
    if "Dream" in text:
        yield lambda: parse_dream(text["Dream"])
    if "parameters" in text:
        yield lambda: (parse_fooocus(text["parameters"], text.get("fooocus_scheme"),
                                     max_json_bytes=max_json_bytes)
                       if "fooocus_scheme" in text or text["parameters"].lstrip().startswith("{")
                       else parse_a1111(text["parameters"]))
    if is_novelai(text) or ("Description" in text and "Comment" in text):
        yield lambda: parse_novelai(text, max_json_bytes=max_json_bytes)
    fooocus = exif.get("exif:Software", "").lower().startswith("fooocus")
    scheme = exif.get("exif:MakerNote") if fooocus or "exif:0x9286" in exif else None
    if "exif:UserComment" in exif:
        yield lambda: _infotext(exif["exif:UserComment"], scheme, fooocus, max_json_bytes)
    if "exif:0x9286" in exif:
        yield lambda: _infotext(exif["exif:0x9286"], scheme, True, max_json_bytes)
    model_tag = exif.get("exif:Model", "")
    if model_tag.startswith(COMFY_EXIF_PREFIX):  # ComfyUI's animated WebP savers
        yield lambda: parse_comfyui(model_tag[len(COMFY_EXIF_PREFIX):],
                                    max_json_bytes=max_json_bytes, image_size=image_size)
    comment = text.get("comment")
    if comment is not None and is_params_line(comment.strip().split("\n")[-1]):
        yield lambda: parse_a1111(comment)


def _json_reader(chunk: str, what: str, parse: Callable[[Any], GenerationMetadata],
                 max_json_bytes: int) -> GenerationMetadata:
    data, problem = load_json(chunk, what, max_json_bytes)
    if problem is not None:
        return GenerationMetadata(source="none", warnings=(problem,))
    return parse(data)


#: the most characters read from any one text chunk or EXIF text: a generator writes kilobytes,
#: a hostile file 64 MB on one line
MAX_CHUNK_CHARS = 4 << 20


def _capped(texts: dict[str, str], limit: int, warnings: list[str]) -> dict[str, str]:
    out = {}
    for key, value in texts.items():
        if len(value) > limit:
            warnings.append(f"metadata: '{key}' holds {len(value)} characters; only the first {limit} were read")
            value = value[:limit]
        out[key] = value
    return out


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_surrogates(text: str) -> str:
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


def _sanitised(meta: Any, warnings: list[str]) -> Any:
    """Text fields of ``meta`` (and its samplers) without lone surrogates (JSON's ``"\\ud800"``),
    which no UTF-8 writer accepts: replaced by U+FFFD, with a warning naming the field."""
    from dataclasses import fields

    changes: dict[str, Any] = {}
    for f in fields(meta):
        value = getattr(meta, f.name)
        if isinstance(value, str) and _has_surrogate(value):
            changes[f.name] = _no_surrogates(value)
            warnings.append(f"metadata: '{f.name}' held characters that are not valid Unicode (lone "
                            "surrogates); replaced with U+FFFD")
        elif f.name == "samplers" and value:
            cleaned = tuple(_sanitised(s, warnings) for s in value)
            if cleaned != value:
                changes[f.name] = cleaned
        elif f.name == "loras" and value:
            cleaned = tuple(_sanitised(item, warnings) for item in value)
            if cleaned != value:
                changes[f.name] = cleaned
        elif f.name == "raw" and value:
            changes[f.name] = {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    return replace(meta, **changes) if changes else meta


def read_metadata(image: Image.Image, path: str | None = None, *, max_json_bytes: int = 1 << 20,
                  max_raw_chars: int = 65536) -> GenerationMetadata:
    """Generation metadata of an opened image (``path`` is only used to find a caption sidecar).

    Returns ``GenerationMetadata(source="none")`` when nothing is recognised; problems are in
    ``warnings``, raw text (truncated to ``max_raw_chars``) in ``raw``.
    """
    warnings: list[str] = []
    try:
        text = _text_chunks(image)
    except Exception as exc:  # a broken plugin's info: keep going without text chunks
        warnings.append(f"metadata: unreadable text chunks ({type(exc).__name__})")
        text = {}
    exif = _exif_texts(image, warnings)
    limit = max(MAX_CHUNK_CHARS, max_json_bytes + 1)  # an over-size JSON chunk still says so
    text, exif = _capped(text, limit, warnings), _capped(exif, limit, warnings)

    chosen: GenerationMetadata | None = None
    recognised: GenerationMetadata | None = None
    size = image.size if all(isinstance(v, int) and v > 0 for v in image.size) else None
    for reader in _candidates(text, exif, max_json_bytes, size):
        try:
            meta = reader()
        except Exception as exc:  # a reader bug must not cost the row: report and go on
            warnings.append(f"metadata: reader failed ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        warnings.extend(meta.warnings)
        if meta.source == "none":
            continue
        if _has_values(meta):
            chosen = meta
            break
        recognised = recognised or meta
    result = chosen or recognised or GenerationMetadata(source="none")
    result = replace(result, warnings=())

    if path is not None and not result.prompt:
        sidecar = read_sidecar(path, max_bytes=max_json_bytes)
        warnings.extend(sidecar.warnings)
        if sidecar.source != "none":
            result = result.merged(replace(sidecar, warnings=()))

    raw = {key: value[:max_raw_chars] for key, value in {**text, **exif, **result.raw}.items()}
    result = _sanitised(replace(result, raw=raw), warnings)
    return replace(result, warnings=dedupe(warnings))
