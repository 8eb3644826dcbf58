"""The command line: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from routelens.export.schema import SCHEMA_FILE


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routelens", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("routelens: error:")
    for needle in needles:
        assert needle in lines[0]


def test_models_lists_catalog():
    result = run("models")
    assert result.returncode == 0
    assert "smollm2-135m-instruct" in result.stdout and "gemma-3-270m" in result.stdout


def test_models_architectures_lists_every_covered_model_type():
    from routelens.models.adapters import supported_model_types

    result = run("models", "--architectures")
    assert result.returncode == 0, result.stderr
    listed = {t.strip() for line in result.stdout.splitlines() if "│" in line
              for t in line.split("│")[2].split(",") if t.strip()}
    assert listed == set(supported_model_types()) and len(listed) >= 30
    assert f"({len(listed)} model types)" in " ".join(result.stdout.split())


def test_misspelled_catalog_name():
    assert_one_line_error(run("trace", "smollm2-135m-instrct", "hello"), "did you mean 'smollm2-135m-instruct'")


def test_missing_path(tmp_path):
    assert_one_line_error(run("trace", str(tmp_path / "nothing-here"), "hello"), "no such model")
    assert_one_line_error(run("check", str(tmp_path / "missing.gguf")), "no such model")


def test_unsupported_architecture(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path)
    assert_one_line_error(run("trace", str(tmp_path), "hello"), "'bert'")


def test_empty_prompt():
    assert_one_line_error(run("trace", "smollm2-135m-instruct", "   "), "prompt is empty")


def test_bad_threshold():
    assert_one_line_error(run("trace", "smollm2-135m-instruct", "hi", "--threshold", "2"), "threshold")


@pytest.mark.slow
def test_prompt_longer_than_context(smollm2):  # the fixture converts the model first: no progress lines
    assert_one_line_error(run("trace", "smollm2-135m-instruct", "Paris " * 9000), "reads at most 8192")


@pytest.mark.slow
def test_trace_writes_graph_json(tmp_path):
    out = tmp_path / "g.json"
    result = run("trace", "smollm2-135m-instruct", "The capital of France is", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "' Paris'" in result.stdout
    graph = json.loads(out.read_text())
    jsonschema.validate(graph, json.loads(SCHEMA_FILE.read_text()))
    assert graph["target"] == {"pos": 4, "token": " Paris"}
    assert graph["tokens"][3] == " France"


@pytest.mark.slow
def test_check_command_passes():
    result = run("check", "smollm2-135m-instruct")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
