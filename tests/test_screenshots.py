"""scripts/screenshots.py makes the committed pictures of the default view (docs/screenshots/): it
runs here, in CI, on the real default model, and the committed files are the ones it names."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

pytestmark = pytest.mark.slow


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_script_makes_the_committed_screenshots(browser, server, tmp_path):
    counts = screenshots.shoot(browser, server, tmp_path)
    # the prompts are the sizes the names say (the 650-token one within a few tokens)
    assert counts["5"] == 5 and 35 <= counts["40"] <= 45 and 640 <= counts["650"] <= 660, counts
    made = sorted(p.name for p in tmp_path.glob("*.png"))
    assert made == ["route-40-tokens.png", "route-5-tokens.png", "route-650-tokens.png"]
    committed = ROOT / "docs" / "screenshots"
    for name in made:
        # the page at the script's viewport (a device pixel ratio of 1)
        assert png_size(tmp_path / name) == (screenshots.VIEWPORT["width"], screenshots.VIEWPORT["height"])
        assert png_size(committed / name) == png_size(tmp_path / name), f"docs/screenshots/{name} is missing or stale"
