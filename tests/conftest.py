"""Shared fixtures: the embedded real models are loaded once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2():
    import routelens as rl

    return rl.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3():
    import routelens as rl

    return rl.load("gemma-3-270m")
