"""The web app's default view for a 5-, a 40- and a 650-token prompt, as PNG files under
docs/screenshots/, so the look is reviewed like code (tests/test_screenshots.py runs this in CI).

Each picture is what a user sees after Run on smollm2-135m-instruct (the embedded default model):
the route drawn, refined to the lowest threshold in the background, the idle-time preparation
done (window.__routelensDebug.ready), the pointer away from the graph.

    python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

VIEWPORT = {"width": 1400, "height": 900}
WAIT_MS = 600_000  # only ends a hang: CI shares 2 cores
SHORT = "The capital of France is"
MEDIUM = ("In the small harbor town where the old lighthouse keeper lived, the children gathered every "
          "evening to hear his stories about the sea, the storms and the ships that never came back, and "
          "one of them asked him")
WORDS = ("the river city north light stone market winter garden music paper letter forest window "
         "silver morning harbor bridge story mountain").split()


def long_prompt(n_words: int = 646) -> str:
    """A fixed 650-token prompt: the same words in the same order on every run."""
    return " ".join(WORDS[(i * 7 + i // 20) % len(WORDS)] for i in range(n_words))


PROMPTS = {"5": SHORT, "40": MEDIUM, "650": long_prompt()}


def shoot(browser: Any, base: str, out: Path) -> dict[str, int]:
    """Write route-<n>-tokens.png for each prompt; returns each prompt's token count."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, prompt in PROMPTS.items():
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(base + "/")
            page.get_by_test_id("prompt-input").fill(prompt)
            page.get_by_test_id("run-button").click()
            page.wait_for_function(
                "() => { const d = window.__routelensDebug; const g = document.querySelector('[data-testid=graph]');"
                " return d && d.traceId && !d.refining && d.ready && g && g.dataset.hooks === 'sync'"
                " && document.querySelectorAll('[data-testid=graph-edge]').length > 0; }")
            counts[name] = page.locator("[data-testid=prediction]").count()
            page.mouse.move(0, 0)
            page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
            page.screenshot(path=str(out / f"route-{name}-tokens.png"))
        finally:
            context.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from servers import CHROMIUM_ARGS, chromium_path, running_server

    with running_server() as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            counts = shoot(browser, base, args.out)
        finally:
            browser.close()
    for name, n in counts.items():
        print(f"route-{name}-tokens.png: {n} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
