"""Prompt text: the string a node output makes, whatever node class makes it.

A prompt reaches a text encoder through any chain of string nodes: a core ``PrimitiveString``, the
WAS node suite's ``Text Multiline`` -> ``Text Concatenate``, Comfyroll's ``CR Prompt Text``, a
pysssss ``StringFunction``... Each output is computed once (memoised: fan-out must not make the
walk exponential) by the first rule that applies:

1. a node whose text is only known at run time (a random line, a file, wildcards, dynamic
   prompts, a captioner) makes the text *unknown*, with a warning naming the node: sdeval
   reports no prompt rather than a wrong one;
2. a node of a known pack whose output is a function of its inputs (:data:`HANDLERS`:
   concatenations with their delimiters, ``Text String``'s four outputs, Impact's populated
   wildcard text, SDXL Prompt Styler's ``base`` style) is computed exactly as the pack does it;
3. any other node with exactly one text input passes it through (a literal on the node, or the
   text of the node it links to), unless it may rewrite it (other string settings such as
   ``find``/``replace``/``mode``, or a class name that says so: replace, shuffle, trim...); a node
   with several text inputs combines them in a way sdeval cannot know: its text is unknown.

The result names the input holding the text when it is one literal (the input a reprompt
rewrites); a computed text has no such input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sdeval.formats.comfyui_graph import InputPath, Link, link
from sdeval.inputs.metadata.comfyui.values import MAX_TEXT_CHARS, GraphValues

#: a text and the literal input it was read from (None: computed from several inputs).
Text = tuple[str, InputPath | None]

#: text chains are followed recursively (about five frames a level, on top of the conditioning
#: walk's): well under Python's recursion limit.
MAX_TEXT_DEPTH = 64

#: classes whose text is made at run time: the graph does not hold it.
RUNTIME_CLASSES: dict[str, str] = {
    "Load Text File": "reads a text file",
    "Text Load Line From File": "reads a line of a file",
    "Text File History Loader": "reads a text file",
    "Text Random Line": "picks a random line",
    "Text Random Prompt": "fetches a random prompt",
    "Text Add Token by Input": "sets a token at run time",
    "Text Add Tokens": "sets tokens at run time",
    "Text Parse Noodle Soup Prompts": "expands wildcards",
    "Text Dictionary Get": "reads a dictionary filled at run time",
    "DPRandomGenerator": "expands a dynamic prompt",
    "DPCombinatorialGenerator": "expands a dynamic prompt",
    "DPFeelingLucky": "fetches a prompt",
    "DPMagicPrompt": "generates a prompt with a language model",
    "DPJinja": "renders a template",
    "CR Prompt List": "picks a line of a list",
    "CR Load Prompt Style": "reads a style file",
    "easy wildcards": "expands wildcards",
}
#: words in a class name that mean the text comes from outside the graph (files, randomness,
#: wildcards, captioners, language models).
RUNTIME_WORDS = ("random", "wildcard", "load", "file", "dynamic", "lucky", "magic", "generator",
                 "noodle soup", "llm", "gpt", "ollama", "florence", "caption", "interrogat",
                 "blip", "tagger", "wd14", "llava", "gemini", "qwen", "translat")
#: input names that never hold prompt text, though they are strings.
NOT_TEXT_INPUTS = frozenset({
    "delimiter", "separator", "linebreak_addition", "clean_whitespace", "filename_prefix",
    "file_path", "label", "mode", "action", "tidy_tags", "style", "log_prompt", "token_name",
    "dictionary_name", "upscale_method", "crop", "sampler_name", "scheduler", "ckpt_name",
    "vae_name", "lora_name", "select to add wildcard", "select to add lora",
})
LORA_TAG = re.compile(r"<lora:", re.IGNORECASE)  # any tag start: such a text is not replayed


def has_wildcards(text: str) -> bool:
    """Impact Pack wildcard syntax (``__name__`` files, ``{a|b}`` choices), conservatively and in
    linear time: two ``__`` or a ``{`` with a ``|`` count."""
    return text.count("__") >= 2 or ("{" in text and "|" in text)


def is_text_input(name: str) -> bool:
    """An input name that holds prompt text (``text``, ``text_b``, ``prompt``, ``value``...)."""
    low = name.lower()
    if low in NOT_TEXT_INPUTS:
        return False
    return (low in ("value", "string", "str", "positive", "negative", "t5xxl", "clip_l", "clip_g")
            or "text" in low or "prompt" in low or low.startswith("string"))


#: words in a class name that mean the node rewrites the text it is given.
TRANSFORM_WORDS = ("replace", "shuffle", "sort", "upper", "lower", "case", "regex", "trim",
                   "truncate", "split", "slice", "substring", "enhance", "expand", "rewrite",
                   "template", "format", "find", "strip", "remove", "filter", "clean", "append",
                   "prepend", "prefix", "suffix", "join", "combine", "merge", "concat", "style")


def transform_reason(class_type: str, inputs: dict[str, Any], text_name: str) -> str | None:
    """Why a node of an unknown class with one text input may not pass it on unchanged: its
    class name says it rewrites text, or it takes other string settings (``find``, ``replace``,
    ``mode``...) that may change it. None: a plain text holder or pass-through."""
    low = class_type.lower()
    word = next((w for w in TRANSFORM_WORDS if w in low), None)
    if word is not None:
        return f"its class name says '{word}'"
    others = [k for k, v in inputs.items() if k != text_name and isinstance(v, str)]
    if others:
        return "it has other string settings: " + ", ".join(others[:4])
    return None


def runtime_reason(class_type: str) -> str | None:
    """Why a class's text is only known at run time; None when it is not such a class."""
    if class_type in RUNTIME_CLASSES:
        return RUNTIME_CLASSES[class_type]
    low = class_type.lower()
    word = next((w for w in RUNTIME_WORDS if w in low), None)
    return f"its class name says '{word}'" if word else None


class Texts:
    """The text behind string inputs of one graph, memoised per producing output."""

    def __init__(self, values: GraphValues) -> None:
        self.g = values
        self._memo: dict[Link, Text | None] = {}
        self._active: set[Link] = set()

    # ------------------------------------------------------------------------------ entry points

    def of_input(self, node_id: str, name: str, depth: int = 0) -> Text | None:
        """The text an input holds or is linked to; None (warned) when it cannot be known."""
        inputs = self.g.inputs(node_id)
        if name not in inputs:
            return None
        return self.of_value(inputs[name], (node_id, name), depth)

    def of_value(self, value: Any, holder: InputPath, depth: int = 0) -> Text | None:
        source = link(value)
        if source is None:
            if isinstance(value, str):
                return value, holder
            self.g.warn(f"comfyui: prompt unknown: text input {holder[0]}.{holder[1]} holds "
                        f"a {type(value).__name__}, not text")
            return None
        g = self.g
        if source[0] not in g.graph:
            g.warn(f"comfyui: unresolved link at {holder[0]}.{holder[1]} -> node {source[0]} "
                   "(no such node)")
            return None
        if source in self._memo:
            return self._memo[source]
        if source in self._active:
            return None  # a cycle, reported with the execution order
        if depth > MAX_TEXT_DEPTH:
            g.warn(f"comfyui: text chain deeper than {MAX_TEXT_DEPTH} nodes at node {source[0]}; "
                   "not followed")
            return None
        self._active.add(source)
        try:
            result = self._node(source[0], source[1], depth + 1)
        finally:
            self._active.discard(source)
        if result is not None and len(result[0]) > MAX_TEXT_CHARS:
            g.warn(f"comfyui: node {source[0]} ({g.cls(source[0])}) builds more than "
                   f"{MAX_TEXT_CHARS} characters; the text is not used")
            result = None
        self._memo[source] = result
        return result

    def unknown(self, nid: str, why: str) -> None:
        self.g.warn(f"comfyui: prompt unknown: node {nid} ({self.g.cls(nid)}) {why}")

    # ------------------------------------------------------------------------------ the rules

    def _node(self, nid: str, out: int, depth: int) -> Text | None:
        ct = self.g.cls(nid)
        handler = HANDLERS.get(ct)
        if handler is not None:
            return handler(self, nid, out, depth)
        why = runtime_reason(ct)
        if why is not None:
            self.unknown(nid, f"makes its text at run time ({why}); the graph does not hold it")
            return None
        return self._generic(nid, depth)

    def _generic(self, nid: str, depth: int) -> Text | None:
        inputs = self.g.inputs(nid)
        names = [k for k in inputs if is_text_input(k)]
        if len(names) == 1:
            why = transform_reason(self.g.cls(nid), inputs, names[0])
            if why is not None:
                self.unknown(nid, f"may change its text ({why}); sdeval does not replay it")
                return None
            return self.of_input(nid, names[0], depth)
        if not names:
            self.unknown(nid, "has no text input sdeval can read")
        else:
            self.unknown(nid, f"combines several texts ({', '.join(names[:6])}) in a way sdeval "
                              "does not know")
        return None

    # helpers for the handlers

    def texts(self, nid: str, names: tuple[str, ...], depth: int, missing: str | None = ""
              ) -> list[str] | None:
        """The texts of several inputs (an absent input counts as ``missing``; None: skipped)."""
        inputs = self.g.inputs(nid)
        found: list[str] = []
        for name in names:
            if name not in inputs:
                if missing is not None:
                    found.append(missing)
                continue
            text = self.of_input(nid, name, depth)
            if text is None:
                return None
            found.append(text[0])
        return found

    def option(self, nid: str, name: str, default: str) -> str | None:
        """A string widget (delimiter, mode...), literal or linked; None when unknown."""
        if name not in self.g.inputs(nid):
            return default
        text = self.of_input(nid, name)
        return None if text is None else text[0]


# ---------------------------------------------------------------------------------- handlers

def _string_concatenate(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """Core ``StringConcatenate``: ``string_a + delimiter + string_b``."""
    parts = t.texts(nid, ("string_a", "string_b"), depth)
    delimiter = t.option(nid, "delimiter", "")
    if parts is None or delimiter is None:
        return None
    return _joined(t, nid, delimiter, parts)


def _was_concatenate(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """WAS ``Text Concatenate``. Early versions: ``text_a + ("\\n" if linebreak_addition) +
    text_b``; later ones: the non-empty ``text_*`` inputs (sorted by name, stripped when
    ``clean_whitespace``) joined by ``delimiter`` (``"\\n"`` written as two characters counts)."""
    inputs = t.g.inputs(nid)
    if "linebreak_addition" in inputs and "delimiter" not in inputs:
        parts = t.texts(nid, ("text_a", "text_b"), depth)
        flag = t.option(nid, "linebreak_addition", "false")
        if parts is None or flag is None:
            return None
        return _joined(t, nid, "\n" if flag == "true" else "", parts)
    names = tuple(sorted(k for k in inputs if k.startswith("text_")))
    parts = t.texts(nid, names, depth, missing=None)
    delimiter = t.option(nid, "delimiter", ", ")
    clean = t.option(nid, "clean_whitespace", "true")
    if parts is None or delimiter is None or clean is None:
        return None
    if delimiter in ("\n", "\\n"):
        delimiter = "\n"
    if clean == "true":
        parts = [p.strip() for p in parts]
    return _joined(t, nid, delimiter, [p for p in parts if p != ""])


def _cr_concatenate(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """Comfyroll ``CR Text Concatenate``: ``text1 + separator + text2`` (output 0)."""
    if out != 0:
        t.unknown(nid, f"output {out} is not its text")
        return None
    parts = t.texts(nid, ("text1", "text2"), depth)
    separator = t.option(nid, "separator", "")
    if parts is None or separator is None:
        return None
    return _joined(t, nid, separator, parts)


def _string_function(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """pysssss ``StringFunction``: ``append`` joins the non-empty texts (``", "`` when
    ``tidy_tags``), ``replace`` replaces ``text_b`` by ``text_c`` in ``text_a`` (a ``/regex/`` is
    not replayed: unknown); ``tidy_tags`` then collapses spaces and commas."""
    action = t.option(nid, "action", "append")
    tidy = t.option(nid, "tidy_tags", "yes")
    parts = t.texts(nid, ("text_a", "text_b", "text_c"), depth)
    if action is None or tidy is None or parts is None:
        return None
    a, b, c = parts
    if action == "append":
        text = (", " if tidy == "yes" else "").join(p for p in (a, b, c) if p)
    elif action == "replace":
        if b.startswith("/") and b.endswith("/"):
            t.unknown(nid, "replaces by a regular expression, which sdeval does not replay")
            return None
        if b == "":
            t.unknown(nid, "replaces an empty string")
            return None
        if len(a) * max(1, len(c)) > MAX_TEXT_CHARS * 4:
            t.unknown(nid, "would build an over-long text")
            return None
        text = a.replace(b, c)
    else:
        t.unknown(nid, f"has an unknown action {action[:40]!r}")
        return None
    if tidy == "yes":
        text = re.sub(r"\s{2,}", " ", text).replace(" ,", ",")
        text = re.sub(r",{2,}", ",", text).strip()
    return text, None


def _was_text_string(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """WAS ``Text String``: four outputs, one per input (``text``, ``text_b``, ``text_c``,
    ``text_d``)."""
    names = ("text", "text_b", "text_c", "text_d")
    if not 0 <= out < len(names):
        t.unknown(nid, f"has no output {out}")
        return None
    if names[out] not in t.g.inputs(nid):
        return "", None  # an absent optional input is the empty default
    return t.of_input(nid, names[out], depth)


def _parse_tokens(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """WAS ``Text Parse Tokens`` replaces ``[tokens]`` with values set at run time: exact only
    when the text holds no ``[``."""
    text = t.of_input(nid, "text", depth)
    if text is None:
        return None
    if "[" in text[0]:
        t.unknown(nid, "replaces [tokens] with values set at run time")
        return None
    return text


def wildcard_text(t: Texts, nid: str, depth: int) -> Text | None:
    """Impact Pack ``ImpactWildcardProcessor``/``Encode``: the UI fills ``populated_text`` from
    ``wildcard_text`` before queueing (``populate`` mode) or keeps the user's text (``fixed``);
    the server expands any wildcard syntax left in it with the seed. Exact when
    ``populated_text`` holds no wildcard syntax."""
    populated = t.of_input(nid, "populated_text", depth) if "populated_text" in t.g.inputs(nid) else None
    if populated is None:
        if "populated_text" not in t.g.inputs(nid):
            t.unknown(nid, "has no populated_text")
        return None
    if populated[0] == "" and t.g.inputs(nid).get("wildcard_text"):
        t.unknown(nid, "has an empty populated_text: the wildcards are expanded at run time")
        return None
    if has_wildcards(populated[0]):
        t.unknown(nid, "expands wildcards (__name__ or {a|b}) at run time")
        return None
    return populated


def _impact_processor(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    return wildcard_text(t, nid, depth)


def _impact_encode_text(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """``ImpactWildcardEncode`` output 3 is the populated text."""
    if out != 3:
        t.unknown(nid, f"output {out} is not its text")
        return None
    return wildcard_text(t, nid, depth)


def styler_texts(t: Texts, nid: str, depth: int) -> tuple[Text, Text] | None:
    """SDXL Prompt Styler: the prompt is the style's template with ``{prompt}`` replaced. The
    templates live in the pack's JSON files, which the graph does not hold: exact only for the
    ``base``/``none`` styles, whose template is the text itself."""
    style = t.option(nid, "style", "base")
    if style is None:
        return None
    if style.strip().lower() not in ("base", "none"):
        t.unknown(nid, f"applies the style {style[:60]!r}, whose template is in the pack's "
                       "files, not in the graph")
        return None
    pos = t.of_input(nid, "text_positive", depth) if "text_positive" in t.g.inputs(nid) else ("", None)
    neg = t.of_input(nid, "text_negative", depth) if "text_negative" in t.g.inputs(nid) else ("", None)
    if pos is None or neg is None:
        return None
    return pos, neg


def _styler(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    texts = styler_texts(t, nid, depth)
    if texts is None:
        return None
    if out not in (0, 1):
        t.unknown(nid, f"has no text output {out}")
        return None
    return texts[out]


def power_prompt_text(t: Texts, nid: str, depth: int) -> Text | None:
    """rgthree Power Prompt: the ``prompt`` text; ``<lora:...>`` tags in it are loaded and cut
    out before encoding, which sdeval does not replay exactly: unknown then."""
    text = t.of_input(nid, "prompt", depth)
    if text is not None and LORA_TAG.search(text[0]):
        t.unknown(nid, "loads <lora:...> tags from its prompt and cuts them out before encoding")
        return None
    return text


def _power_prompt(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """Power Prompt's TEXT output (3 for the full node, 1 for the simple one)."""
    return power_prompt_text(t, nid, depth)


def _show_text(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """pysssss ``ShowText`` shows its input and passes it on."""
    return t.of_input(nid, "text", depth) if "text" in t.g.inputs(nid) else t._generic(nid, depth)


def _text_to_console(t: Texts, nid: str, out: int, depth: int) -> Text | None:
    """WAS ``Text to Console`` prints its text under a label and passes it on."""
    return t.of_input(nid, "text", depth) if "text" in t.g.inputs(nid) else t._generic(nid, depth)


def _joined(t: Texts, nid: str, delimiter: str, parts: list[str]) -> Text | None:
    if sum(len(p) for p in parts) + len(delimiter) * max(0, len(parts) - 1) > MAX_TEXT_CHARS:
        t.g.warn(f"comfyui: {t.g.cls(nid)} node {nid} builds more than {MAX_TEXT_CHARS} "
                 "characters; the text is not used")
        return None
    return delimiter.join(parts), None


HANDLERS: dict[str, Callable[[Texts, str, int, int], Text | None]] = {
    "StringConcatenate": _string_concatenate,
    "Text Concatenate": _was_concatenate,
    "CR Text Concatenate": _cr_concatenate,
    "StringFunction|pysssss": _string_function,
    "ShowText|pysssss": _show_text,
    "Text to Console": _text_to_console,
    "Text String": _was_text_string,
    "Text Parse Tokens": _parse_tokens,
    "ImpactWildcardProcessor": _impact_processor,
    "ImpactWildcardEncode": _impact_encode_text,
    "SDXLPromptStyler": _styler,
    "Power Prompt (rgthree)": _power_prompt,
    "Power Prompt - Simple (rgthree)": _power_prompt,
}
