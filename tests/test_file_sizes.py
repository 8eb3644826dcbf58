"""No source file over 400 lines without a reason at its top (the team guide's rule): Python in the
package, TypeScript and CSS in the front end. A longer file says why in its opening comment or
docstring, with the words "on purpose" in its first 25 lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 400


def sources() -> list[Path]:
    files = sorted((ROOT / "routelens").rglob("*.py"))
    files += sorted(p for ext in ("ts", "css") for p in (ROOT / "frontend" / "src").rglob(f"*.{ext}"))
    return files


def test_long_files_say_why():
    assert len(sources()) > 50  # the globs found the code
    unexplained = []
    for path in sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > LIMIT and "on purpose" not in "\n".join(lines[:25]):
            unexplained.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not unexplained, ("split these files, or say at their top why they are longer than "
                             f"{LIMIT} lines ('... on purpose: ...'): {unexplained}")
