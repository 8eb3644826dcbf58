"""A long-running server's memory stays flat: 300 mixed requests over 50 distinct prompts on the
real default model, resident memory at the end within 15% of its value after the first 50."""

from __future__ import annotations

import json

import pytest

from servers import running_server
from soak import soak

pytestmark = pytest.mark.slow


def test_resident_memory_stays_flat_over_300_requests(smollm2, tmp_path):
    config = tmp_path / "soak.json"
    config.write_text(json.dumps({"debug": True, "max_trace_cache_mb": 96}))
    with running_server("--config", str(config)) as base:
        result = soak(base, total=300, prompts=50)
    after_50, at_end = result.rss_after(50), result.rss_mb[-1][1]
    print(f"\nsoak: {result.requests} requests, statuses {result.statuses}; resident memory after 50 requests "
          f"{after_50:.0f} MiB, at the end {at_end:.0f} MiB ({(at_end / after_50 - 1) * 100:+.1f}%)")
    assert result.statuses == {200: 300}
    assert at_end <= after_50 * 1.15, result.rss_mb
