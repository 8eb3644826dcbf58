"""Token labels: every token shown as text that is faithful to its bytes.

A tokenizer's vocabulary is made of byte strings, and a token may hold only some of the bytes of a
character ("🍕" is three smollm2 tokens, a rare character is several `<0xNN>` tokens in Gemma).
Decoding such a token on its own gives U+FFFD, so different tokens would all look the same. This
module gives each token its bytes (`TokenBytes`) and a label built from them:

Byte groups. Bytes that are not (yet) a character are written as a byte group: upper-case hex
pairs between angle brackets, `<E6 97>` (`byte_label`, matched by `BYTE_GROUP`). Such bytes are
80-FF (ASCII always decodes), so text like "<17>" is not a byte group; the one other byte group is
that of a token shown entirely as its bytes (below), which holds its "<", 3C.

A token in a sequence (`sequence_labels`, what `trace.tokens` and graph axes show): the bytes are
decoded from the start as UTF-8 and each character is shown by the token that holds its last byte.
A token's label is

* the characters it completes, a character begun by earlier tokens shown whole, followed by
* its own bytes of a character it leaves unfinished, as a byte group (`<E6 97>`, or `" <E6>"`
  for smollm2's "Ġæ"), and
* in place, as a byte group, its own bytes that can never be part of a character (invalid UTF-8).

So "日本" on smollm2 is `<E6 97>`, `日`, `本`, and "🍕" is `<F0 9F>`, `<8D>`, `🍕`. The labels rebuild
the text: remove the byte groups from every label and join them (`rebuild_text`); this gives the
tokenizer's own decoding of the sequence (invalid bytes, which it shows as U+FFFD, are left out).
Every byte is shown once in a byte group or a character, except the first pieces of a character
split over tokens, which are shown both as their bytes and in the character their last token shows.
A sequence label depends on the tokens before it: the last piece of "🍕" shows "🍕" as a token
holding all of "🍕" would; the bytes beside the labels tell such tokens apart.

A token on its own (`token_label`, what prediction and top-token lists show): its bytes decoded as
UTF-8 when they are a whole text, else the same mixed form (`<E6 97>`, `" <E6>"`). These labels are
one-to-one: distinct byte sequences never share a label, and `label_bytes` turns a label back into
its bytes. To keep that true, a token whose own text contains something shaped like a byte group
(no token of the embedded models does) is shown entirely as its bytes, in both kinds of label.

The raw bytes travel beside the labels as hex strings (`bytes.hex()`: "e697"), e.g. the
`token_bytes` list of a trace and of the graph JSON, and the `bytes` of each listed token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

# A byte group holds a byte 80-FF (only those can fail to be a character: ASCII always decodes) or
# 3C, the "<" of a token shown as its bytes; so "<0A>" or "<17>" is text.
BYTE_GROUP = re.compile(r"<(?:[0-9A-F]{2} )*(?:[89A-F][0-9A-F]|3C)(?: [0-9A-F]{2})*>")
SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_label(data: bytes) -> str:
    """Bytes as a byte group: b"\\xe6\\x97" -> "<E6 97>"."""
    return "<" + " ".join(f"{b:02X}" for b in data) + ">"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from bytes to the printable characters byte-level BPE vocabularies are written
    in ("Ġ" is the space, byte 0x20)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


# ---- labels -------------------------------------------------------------------------------------
def _runs(data: bytes) -> list[tuple[str, int, int]]:
    """`data` cut into runs (kind, start, end): "text" decodes as UTF-8, "bad" can never be part of
    a character (one maximal invalid subpart, as Python's decoder reports it), "open" is the
    unfinished character at the end."""
    out: list[tuple[str, int, int]] = []
    pos = 0
    while pos < len(data):
        try:
            data[pos:].decode("utf-8")
        except UnicodeDecodeError as e:
            start, end = pos + e.start, pos + e.end
            if start > pos:
                out.append(("text", pos, start))
            if e.reason == "unexpected end of data":
                out.append(("open", start, len(data)))
                break
            out.append(("bad", start, max(end, start + 1)))
            pos = max(end, start + 1)
            continue
        out.append(("text", pos, len(data)))
        break
    return out


def _label(data: bytes, carried: int) -> tuple[str, bytes]:
    """The label of a token whose bytes are `data[carried:]`, `data[:carried]` being the unfinished
    character carried from earlier tokens; and the unfinished bytes it passes on."""
    parts: list[str] = []
    texts: list[str] = []
    pending = b""
    raw = b""  # bytes for the next byte group (invalid and unfinished runs side by side make one)
    for kind, start, end in _runs(data):
        if kind == "text":
            if raw:
                parts.append(byte_label(raw))
                raw = b""
            text = data[start:end].decode("utf-8")
            parts.append(text)
            texts.append(text)
            continue
        if kind == "open":
            pending = data[start:end]
        raw += data[max(start, carried):end]  # carried bytes were shown by the tokens they came in
    if raw:
        parts.append(byte_label(raw))
    label = "".join(parts)
    if any(BYTE_GROUP.search(t) for t in texts):  # text that looks like a byte group: show the bytes
        label = byte_label(data[carried:])
    return label, pending


def sequence_labels(pieces: Iterable[bytes]) -> list[str]:
    """Labels of consecutive tokens (their bytes in order): see the module's docstring.

    >>> sequence_labels([b"\\xf0\\x9f", b"\\x8d", b"\\x95"])
    ['<F0 9F>', '<8D>', '🍕']
    """
    labels: list[str] = []
    pending = b""
    for piece in pieces:
        label, pending = _label(pending + bytes(piece), len(pending))
        labels.append(label)
    return labels


def token_label(piece: bytes) -> str:
    """The label of one token on its own (a prediction, a top token): its text when its bytes are
    whole UTF-8, else byte groups for the bytes that are not (`<E6 97>`). One-to-one."""
    return _label(bytes(piece), 0)[0]


def rebuild_text(labels: Iterable[str]) -> str:
    """The text a sequence's labels stand for: each label without its byte groups, joined."""
    return "".join(BYTE_GROUP.sub("", label) for label in labels)


def label_bytes(label: str) -> bytes:
    """The bytes of a `token_label` (byte groups as their bytes, the rest as UTF-8)."""
    out = bytearray()
    pos = 0
    for m in BYTE_GROUP.finditer(label):
        out += label[pos : m.start()].encode("utf-8")
        out += bytes.fromhex(m.group(0)[1:-1])
        pos = m.end()
    out += label[pos:].encode("utf-8")
    return bytes(out)


# ---- bytes of token ids --------------------------------------------------------------------------
def _decoder_kinds(tokenizer: Any) -> tuple[set[str], list[tuple[str, str]]]:
    """The decoder steps of a fast tokenizer (their types), and its text replacements ("▁" -> " ")."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return set(), []
    try:
        state = json.loads(decoder.__getstate__())
    except Exception:  # noqa: BLE001 (an unusual decoder: judged by its type alone)
        return {type(decoder).__name__}, []
    kinds: set[str] = set()
    replace: list[tuple[str, str]] = []

    def walk(step: Any) -> None:
        if not isinstance(step, dict):
            return
        kind = step.get("type")
        kinds.add(str(kind))
        if kind == "Replace" and isinstance(step.get("pattern"), dict) and "String" in step["pattern"]:
            replace.append((step["pattern"]["String"], str(step.get("content", ""))))
        elif kind == "Metaspace":
            replace.append((str(step.get("replacement", "▁")), " "))
        for inner in step.get("decoders") or []:
            walk(inner)

    walk(state)
    return kinds, replace


class TokenBytes:
    """The bytes of each token id of a tokenizer, read from its vocabulary (cached per id).

    * byte-level BPE (GPT-2, Llama 3, SmolLM): the token's characters through GPT-2's
      `bytes_to_unicode` table;
    * SentencePiece-style pieces (Gemma, Llama 2): a byte-fallback token `<0xNN>` is that byte,
      any other piece its text with "▁" as a space, encoded as UTF-8;
    * added and special tokens, and any other tokenizer (one that only decodes): the text the
      tokenizer decodes the id to, encoded as UTF-8.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        kinds, self.replace = _decoder_kinds(tokenizer)
        if "ByteLevel" in kinds or hasattr(tokenizer, "byte_decoder"):
            self.scheme = "bytelevel"
        elif kinds & {"ByteFallback", "Replace", "Metaspace"} or hasattr(tokenizer, "sp_model"):
            self.scheme = "pieces"
            if not self.replace:
                self.replace = [("▁", " ")]
        else:
            self.scheme = "text"
        try:
            self.added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        except Exception:  # noqa: BLE001
            self.added = set()
        self.added |= set(getattr(tokenizer, "all_special_ids", []) or [])
        self._cache: dict[int, bytes] = {}

    def __call__(self, ids: Sequence[int]) -> list[bytes]:
        cache = self._cache
        out = []
        for i in ids:
            i = int(i)
            b = cache.get(i)
            if b is None:
                b = cache[i] = self._bytes(i)
            out.append(b)
        return out

    def _piece(self, i: int) -> str | None:
        convert = getattr(self.tokenizer, "convert_ids_to_tokens", None)
        if convert is None:
            return None
        try:
            piece = convert(i)
        except Exception:  # noqa: BLE001 (an id the vocabulary lacks: decoded below)
            return None
        return piece if isinstance(piece, str) else None

    def _bytes(self, i: int) -> bytes:
        if self.scheme != "text":
            piece = self._piece(i)
            if piece is not None:
                if self.scheme == "pieces":
                    m = SENTENCEPIECE_BYTE.fullmatch(piece)
                    if m:
                        return bytes([int(m.group(1), 16)])
                if i not in self.added:
                    if self.scheme == "bytelevel":
                        table = unicode_to_bytes()
                        if all(ch in table for ch in piece):
                            return bytes(table[ch] for ch in piece)
                    else:
                        for old, new in self.replace:
                            piece = piece.replace(old, new)
                        return piece.encode("utf-8", "surrogatepass")
        try:
            text = self.tokenizer.decode([i])
        except Exception:  # noqa: BLE001 (an id the tokenizer cannot decode: no bytes)
            return b""
        return str(text).encode("utf-8", "surrogatepass")
