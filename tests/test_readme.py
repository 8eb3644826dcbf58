"""The README runs as written: its Python block in a plain interactive Python (where every bare
expression is echoed, so a 64 KB repr would show), and its command-line block line by line in
bash, from a fresh folder beside the installed `.venv`, on the embedded default model."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servers import stop

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(heading: str, language: str) -> str:
    """The first fenced block of `language` after the `## heading` line."""
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after ## {heading}"
    return match.group(1)


@pytest.fixture()
def fresh_folder(tmp_path: Path) -> Path:
    """A folder where `.venv` is the environment these tests run in, as after the set-up command."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def test_the_readme_opens_with_the_two_setup_commands():
    first = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith(".venv/bin/routelens serve") and "pip install torch==2.13.0 -e ." in first[0]
    ci = (README.parent / ".ci" / "run").read_text()
    assert first[1] in ci  # .ci/run runs the README's test command


@pytest.mark.slow
def test_the_python_block_runs_as_written(smollm2, fresh_folder):
    code = block_after("Python", "python")
    r = subprocess.run([sys.executable, "-i"], input=code, capture_output=True, text=True, cwd=fresh_folder,
                       timeout=900, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr[-3000:]
    echoed = r.stdout.splitlines()
    assert max(len(line) for line in echoed) < 2000  # no object dumps in a plain prompt
    assert any("<routelens.RouteGraph 'smollm2-135m-instruct', route from position 4 (' Paris')" in line
               for line in echoed), echoed
    assert any(line.startswith("[(' Paris', 0.77") for line in echoed), echoed  # the comment's value
    assert json.loads((fresh_folder / "route.json").read_text())["tokens"][-1] == " is"
    assert "<html" in (fresh_folder / "route.html").read_text()[:2000].lower()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_the_command_line_block_runs_as_written(smollm2, fresh_folder):
    lines = [line for line in block_after("Command line", "bash").splitlines() if line.strip()]
    assert lines[0] == ". .venv/bin/activate"
    for line in lines[1:]:
        command = line.split("#", 1)[0].strip()
        if command == "routelens serve":
            _serve_as_written(fresh_folder)
            continue
        r = subprocess.run(["bash", "-c", f". .venv/bin/activate && {command}"], capture_output=True, text=True,
                           cwd=fresh_folder, timeout=900)
        assert r.returncode == 0, (command, r.stdout[-2000:], r.stderr[-2000:])
        if command.startswith("routelens trace") and "--dry-run" in command:
            assert "tokens (estimate, nothing traced)" in r.stdout and "MiB at the peak" in r.stdout
        elif command.startswith("routelens trace"):
            assert "' Paris'" in r.stdout and (fresh_folder / "route.svg").read_text().lstrip().startswith("<")
        if command.startswith("routelens check"):
            assert "all checks passed" in r.stdout


def _serve_as_written(folder: Path) -> None:
    if not _port_free(8000):
        pytest.skip("port 8000, which the README's `routelens serve` uses, is taken on this machine")
    proc = subprocess.Popen(["bash", "-c", ". .venv/bin/activate && exec routelens serve"], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 600
        for line in proc.stdout:  # the server's own readiness signal: its "is ready" line
            seen.append(line)
            if " is ready " in line:
                break
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
        assert seen and seen[-1].rstrip().endswith("open http://127.0.0.1:8000/"), "".join(seen)
        with urllib.request.urlopen("http://127.0.0.1:8000/api/config", timeout=30) as r:
            assert json.loads(r.read())["default_model"] == "smollm2-135m-instruct"
    finally:
        stop(proc)
