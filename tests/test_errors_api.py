"""Bad input through the Python API: a specific exception type with a message that says what to do."""

from __future__ import annotations

import pytest
import torch
import transformers

import routelens as rl


class CharTokenizer:
    def __call__(self, text):
        return {"input_ids": [ord(c) % 90 for c in text]}

    def decode(self, ids):
        return "".join(chr(32 + i % 90) for i in ids)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    return rl.wrap(transformers.LlamaForCausalLM(cfg), CharTokenizer())


def test_misspelled_catalog_name():
    with pytest.raises(rl.UnknownModelError, match="did you mean"):
        rl.load("gemma-3-270")


def test_missing_path(tmp_path):
    with pytest.raises(rl.ModelNotFoundError):
        rl.load(str(tmp_path / "absent"))
    with pytest.raises(rl.ModelNotFoundError):
        rl.load(str(tmp_path / "absent.gguf"))


def test_folder_without_config(tmp_path):
    with pytest.raises(rl.ModelNotFoundError, match="config.json"):
        rl.load(str(tmp_path))


def test_unsupported_architecture_wrap():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, is_decoder=True)
    with pytest.raises(rl.UnsupportedArchitectureError, match="'bert'"):
        rl.wrap(transformers.BertLMHeadModel(cfg), CharTokenizer())


def test_unsupported_architecture_load(tmp_path):
    transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(rl.UnsupportedArchitectureError, match="'bert'"):
        rl.load(str(tmp_path))


def test_empty_prompt(tiny):
    with pytest.raises(rl.EmptyPromptError):
        tiny.trace("")
    with pytest.raises(rl.EmptyPromptError):
        tiny.trace([])


def test_prompt_too_long(tiny):
    with pytest.raises(rl.PromptTooLongError, match="at most 16"):
        tiny.trace("x" * 17)


def test_out_of_range_arguments(tiny):
    trace = tiny.trace("hello")
    with pytest.raises(rl.InvalidArgumentError):
        trace.graph(target=5)
    with pytest.raises(rl.InvalidArgumentError):
        trace.graph(threshold=1.5)
    with pytest.raises(rl.InvalidArgumentError):
        trace.top_tokens("block", 7, 0)
    with pytest.raises(rl.InvalidArgumentError):
        trace.head_write_tokens(0, 0, 9)
    with pytest.raises(rl.InvalidArgumentError):
        tiny.trace("hello", norm=3)
    with pytest.raises(rl.InvalidArgumentError):
        tiny.trace([1, 2, 999])


def test_errors_are_routelens_errors():
    for cls in (rl.UnknownModelError, rl.ModelNotFoundError, rl.UnsupportedArchitectureError,
                rl.EmptyPromptError, rl.PromptTooLongError, rl.InvalidArgumentError, rl.DownloadError):
        assert issubclass(cls, rl.RoutelensError)
