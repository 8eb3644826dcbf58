"""`routelens serve` says what it is doing: every stage of the default model's load, then a line
with the URL to open once the model is ready (a first start converts the model for about a
minute, and used to print nothing meanwhile)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from servers import running_server
from tiny_models import save_tiny_model


def test_serve_prints_each_load_stage_and_the_url_once_ready(tmp_path):
    save_tiny_model(tmp_path / "tiny", seed=31)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"models": {"tiny": str(tmp_path / "tiny")}, "default_model": "tiny"}))
    with running_server("--config", str(config), "--no-store", ready_model="tiny") as base:
        port = base.rsplit(":", 1)[1]
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"routelens-serve-{port}.log"
        deadline = time.monotonic() + 120
        while " is ready " not in (text := log.read_text()):  # the status may say ready a moment before the line
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    lines = [line for line in text.splitlines() if line.startswith("routelens:")]
    assert lines[0] == f"routelens: serving on {base}/; loading tiny", lines
    assert any(re.fullmatch(r"routelens: \d\d:\d\d:\d\d tiny: loading into memory\.\.\.", line) for line in lines), lines
    ready = [line for line in lines if " is ready " in line]
    assert len(ready) == 1 and re.fullmatch(rf"routelens: \d\d:\d\d:\d\d tiny is ready \(\d+\.\d s\): open {base}/", ready[0])
    assert lines.index(ready[0]) > 1  # after the stages, not before
