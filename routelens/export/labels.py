"""Text in the exported drawing (drawing.py), as frontend/src/graph/labels.ts places it: token
labels (a wide column: position over token; a narrow one: the token rotated -90 degrees, in a
small mono font), thinned only where they would overlap (targets first, then the route's columns,
then the rest), and layer labels thinned so they never collide; svgexport.ts's title wrapping.
(labels.ts's "upright" label, the position over a rotated token, is for a route column the zoom has
narrowed on screen; at the export's scale 1 a route column is at least 46 units wide and never
needs it.)

labels.ts measures text in the browser; here there is none, so `text_width` estimates from above:
per-character widths at least those of DejaVu Sans and Liberation Sans (the fonts a Linux browser
and Pillow draw the sans labels with), 0.62 em per character of the mono font (DejaVu Sans Mono and
Liberation Mono: 0.60), 1 em for wide characters (CJK, emoji) and any other non-ASCII character
in the sans font. A label therefore never takes more room than it was given.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass

from ..models.tokens import BYTE_GROUP

SANS = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MONO = "ui-monospace, SFMono-Regular, 'SF Mono', Menlo, Consolas, 'Liberation Mono', monospace"
# svgexport.ts and labels.ts: sizes (px = graph units) and the vertical rhythm of the export
PAD, TITLE_SIZE, TITLE_LINE, TITLE_LINES, LEGEND_SIZE, LEGEND_LINE, MIN_W, AXIS_H = 12, 13, 18, 3, 11, 17, 360, 46
POS_SIZE, TOK_SIZE, SMALL_SIZE, LAYER_SIZE = 9, 11, 9, 10
WIDE_MIN, COMPACT_W, MAX_CHARS = 28, SMALL_SIZE + 3, 14
ASCENT, DESCENT = 0.93, 0.24  # em, at least DejaVu Sans's and Liberation Sans's (a text box's height)
# em widths, at least those of DejaVu Sans and Liberation Sans (regular; bold), ASCII characters
# not listed take the default; other characters 1 em (wide ones: CJK, emoji included)
_SANS_EM = {
    False: (0.7, ((0.3, "ijlI'"), (0.4, "ft(),-./:;[\\]| "), (0.5, 'r!"'), (0.6, "cksvxyzJL*?_`"),
                  (0.8, "CDGHNOQRU&"), (0.9, "wM#+<=>^~"), (1.0, "mW%"), (1.1, "@"))),
    True: (0.8, ((0.4, "ijlI',./:;\\| "), (0.5, "frt!()-[]"), (0.6, 'csz"*_`J'), (0.7, "0123456789aekovxyEFLT$?"),
                 (0.9, "DGHNOQU#&+<=>^~"), (1.0, "wM"), (1.1, "m%@"), (1.2, "W"))),
}
_SANS_W = {bold: {c: w for w, chars in table for c in chars} for bold, (_, table) in _SANS_EM.items()}


BYTE_GROUP_SPLIT = re.compile(f"({BYTE_GROUP.pattern})")
WHITESPACE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d", "\u00a0": "\u237d"}


def token_text(token: str) -> str:
    """A token with its whitespace made visible and control characters escaped (ui/dom.ts tokenText);
    byte groups ("<E6 97>", models/tokens.py) as they are."""
    if token == "":
        return "\u2205"
    if BYTE_GROUP.search(token):
        parts = BYTE_GROUP_SPLIT.split(token)
        return "".join(part if i % 2 else (part and token_text(part)) for i, part in enumerate(parts))
    return "".join(WHITESPACE.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else ch) for ch in token)


def _char_em(ch: str, mono: bool, bold: bool) -> float:
    if unicodedata.east_asian_width(ch) in ("W", "F") or ord(ch) >= 0x1F000:
        return 1.0
    if mono:
        return 0.62
    return _SANS_W[bold].get(ch, _SANS_EM[bold][0]) if ord(ch) < 128 else 1.0


def text_width(text: str, size: float, mono: bool = False, bold: bool = False) -> float:
    """An estimate of `text`'s width in `size` px, never under the real one (no browser to ask)."""
    return size * sum(_char_em(ch, mono, bold) for ch in text)


def fit_text(text: str, size: float, mono: bool, max_w: float, max_chars: int = 1 << 30, bold: bool = False) -> str:
    """`text` cut (with an ellipsis) to at most `max_w` px and `max_chars` characters; "" when not
    even one character and the ellipsis fit."""
    if len(text) <= max_chars and text_width(text, size, mono, bold) <= max_w:
        return text
    for n in range(min(len(text), max_chars) - 1, 0, -1):
        if text_width(cut := text[:n] + "\u2026", size, mono, bold) <= max_w:
            return cut
    return ""


def wrap(title: str, max_w: float) -> list[str]:
    """The title in lines of at most `max_w` px, words kept whole where they fit; at most
    TITLE_LINES, the last one ending in an ellipsis when the title is longer."""
    def fits(t: str) -> bool:
        return text_width(t, TITLE_SIZE, bold=True) <= max_w

    lines: list[str] = []
    line = ""
    for word in title.split():
        if fits(nxt := f"{line} {word}" if line else word):
            line = nxt
        else:
            if line:
                lines.append(line)
            line = word if fits(word) else fit_text(word, TITLE_SIZE, False, max_w, bold=True)
    if line:
        lines.append(line)
    if len(lines) > TITLE_LINES:
        lines = lines[:TITLE_LINES]
        lines[-1] = fit_text(lines[-1] + " \u2026", TITLE_SIZE, False, max_w, bold=True)
    return lines


@dataclass
class TokenLabel:
    pos: int
    x: float
    compact: bool  # the token only, rotated
    text: str
    lo: float  # the box along x
    hi: float


def plan_token_labels(col_x: list[float], col_w: list[float], tokens: list[str], first: list[int],
                      used: list[bool] | None, compact_len: float) -> list[TokenLabel]:
    """Labels of the columns, none overlapping: `first` (targets, the selection) placed first,
    then the columns the route uses, then the rest, each where its box is free."""
    def label(i: int) -> TokenLabel:
        full, x, w = token_text(tokens[i]), col_x[i], col_w[i]
        if w >= WIDE_MIN:
            text = fit_text(full, TOK_SIZE, True, w - 8, MAX_CHARS)
            half = (max(text_width(text, TOK_SIZE, True), text_width(str(i), POS_SIZE)) + 4) / 2
            return TokenLabel(i, x, False, text, x - half, x + half)
        text = fit_text(full, SMALL_SIZE, True, compact_len, MAX_CHARS) or "\u2026"
        return TokenLabel(i, x, True, text, x - COMPACT_W / 2, x + COMPACT_W / 2)

    placed: list[TokenLabel] = []  # sorted by lo (boxes never overlap, so by hi too)
    los: list[float] = []
    done: set[int] = set()

    def free(lo: float, hi: float) -> bool:
        j = bisect_left(los, lo)
        return not (j > 0 and placed[j - 1].hi > lo) and not (j < len(placed) and placed[j].lo < hi)

    def put(lab: TokenLabel) -> None:
        j = bisect_left(los, lab.lo)
        placed.insert(j, lab)
        los.insert(j, lab.lo)
        done.add(lab.pos)

    def try_place(i: int, force: bool) -> None:
        if i in done:
            return
        lab = label(i)
        if free(lab.lo, lab.hi):
            return put(lab)
        if not force:
            return
        w, best = lab.hi - lab.lo, math.inf  # a target beside another: slid beside the ones in the way
        for b in placed:
            if b.hi < lab.lo - 2 * w or b.lo > lab.hi + 2 * w:
                continue
            for lo in (b.hi, b.lo - w):
                if abs(lo - lab.lo) < abs(best) and free(lo, lo + w):
                    best = lo - lab.lo
        if abs(best) <= 2 * w:
            put(TokenLabel(i, lab.x + best, lab.compact, lab.text, lab.lo + best, lab.hi + best))

    for i in first:
        if 0 <= i < len(col_x):
            try_place(i, True)
    for i in range(len(col_x)):
        if used and used[i]:
            try_place(i, False)
    for i in range(len(col_x)):
        try_place(i, False)
    return placed


def plan_layer_labels(rows: list[tuple[float, str]], gap: float) -> list[tuple[float, str]]:
    """Rows ("emb" first, then the top layer down) kept only `gap` or more from every kept one."""
    kept: list[tuple[float, str]] = []
    for y, text in rows:
        if all(abs(k - y) >= gap for k, _ in kept):
            kept.append((y, text))
    return kept
