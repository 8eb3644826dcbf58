"""The committed web-app bundle (routelens/server/static) is what frontend/ builds today."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRONTEND = ROOT / "frontend"
STATIC = ROOT / "routelens" / "server" / "static"

pytestmark = pytest.mark.slow


def tree(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_committed_bundle_is_fresh(tmp_path):
    npm = shutil.which("npm")
    assert npm, "node and npm are needed to rebuild the front end"
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True, capture_output=True, timeout=600)
    out = tmp_path / "static"
    result = subprocess.run([npm, "run", "build", "--", "--outDir", str(out), "--emptyOutDir"],
                            cwd=FRONTEND, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    built, committed = tree(out), tree(STATIC)
    assert sorted(built) == sorted(committed), (
        "the committed bundle is stale: run `npm run build` in frontend/ and commit routelens/server/static"
    )
    stale = [name for name in built if not filecmp.cmp(built[name], committed[name], shallow=False)]
    assert not stale, f"stale files in routelens/server/static: {stale}; run `npm run build` in frontend/"
    assert "index.html" in committed
    # the standalone viewer (frontend/src/viewer.ts): one classic script that HTML exports and
    # notebooks inline in a <script> element, so nothing in it may end that element
    assert "viewer/viewer.js" in committed, "npm run build must write the viewer bundle too"
    viewer = committed["viewer/viewer.js"].read_text(encoding="utf-8")
    assert "</" not in viewer and "<!--" not in viewer
    assert "routelensViewer" in viewer
    assert not re.match(r"\s*(import|export)\b", viewer) and "import.meta" not in viewer, "the viewer must be a classic script"
