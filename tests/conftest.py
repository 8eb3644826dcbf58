"""Shared fixtures: the embedded real models are loaded once per test session."""

from __future__ import annotations

import os

import pytest

# Tests compute: a trace read back from a store would hide the code under test (and the user's
# store is not the tests' business). tests/test_store.py makes its own stores; servers started
# by tests inherit this setting.
os.environ["ROUTELENS_STORE"] = "off"


@pytest.fixture(scope="session")
def smollm2():
    import routelens as rl

    return rl.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3():
    import routelens as rl

    return rl.load("gemma-3-270m")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny Llama saved as a local model folder (tests/tiny_models.py), one per test module."""
    from tiny_models import save_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "m"
    save_tiny_model(path, seed=11)
    return path


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (tests/servers.py says how it is launched)."""
    from playwright.sync_api import sync_playwright

    from servers import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(smollm2):  # the smollm2 fixture converts the catalog model before the server needs it
    """`routelens serve` on the default model (smollm2-135m-instruct), one per test module."""
    from servers import running_server

    with running_server() as base:
        yield base


@pytest.fixture()
def page(browser, server):
    """A fresh page at the web app's usual window size; its waits only end a hang (CI shares 2 cores)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(600_000)
    yield pg
    context.close()
