"""The one reading of prompt text shared by every path that takes prompts from a file: the
server's dataset files and preloaded prompts (GET /api/prompts, /api/config) and the web app's
Import button (frontend/src/prompts.ts implements the same rule; keep the two in step).

The rule (docs/api.md, "Prompt files"): UTF-8; a byte-order mark at the start is dropped; CRLF,
CR and LF all end a line (no other character does); a line is one prompt exactly as written,
leading and trailing spaces included (a prompt's spaces change its tokens: " Paris" is not
"Paris"); lines that are empty or hold only spaces, tabs, form feeds and vertical tabs are skipped
(that set, not Python's str.isspace or JavaScript's trim, so that both sides skip the same lines).
"""

from __future__ import annotations

BOM = "\ufeff"
BLANK = " \t\f\v"  # a line of only these is no prompt


def prompt_lines(text: str) -> list[str]:
    """The prompts of a text, one a line, by the rule above."""
    if text.startswith(BOM):
        text = text[len(BOM):]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line for line in lines if line.strip(BLANK)]
