"""Tiny random-weight causal LMs, one builder per architecture family routelens supports.

Every model is fp32, eval mode, eager attention, built from a `transformers` config with a fixed
seed (no hub access). Norm gains / biases and all biases are pushed away from their init so that
they matter for the decomposition (a gain of exactly 1 or a bias of exactly 0 hides bugs).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

VOCAB = 97
D = 48
HEADS = 4
KV_HEADS = 2
HEAD_DIM = D // HEADS
FFN = 96
MAX_POS = 64
SLIDING = 4  # smaller than PROMPT so that sliding windows really cut sources
INIT = 0.08  # larger than the usual 0.02 so attention patterns and soft-caps are not trivial

# A fixed prompt: 10 tokens, a repeated token included.
PROMPT = [3, 17, 42, 8, 17, 91, 5, 60, 33, 17]


class TinyTokenizer:
    """Just enough of a tokenizer for routelens: decode one id, encode text as bytes mod vocab."""

    def decode(self, ids, **_kwargs) -> str:
        return "".join(f"[{int(i)}]" for i in ids)  # not "<81>": that reads as a byte label (models/tokens.py)

    def __call__(self, text: str, **_kwargs) -> dict:
        return {"input_ids": [b % VOCAB for b in text.encode()]}


def _perturb(model: nn.Module, seed: int) -> None:
    """Move every norm gain / bias and every bias away from its init; randomise all-zero matrices."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            is_norm = "norm" in type(module).__name__.lower() or isinstance(module, nn.LayerNorm)
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
                if is_norm:
                    param.add_(0.3 * noise)
                elif name.endswith("bias"):
                    param.add_(0.1 * noise)
                elif param.dim() >= 2 and bool((param == 0).all()):
                    # e.g. a router initialised to zeros: ties would make top-k arbitrary
                    param.copy_(INIT * noise)


def _build(cls, config, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config)
    model = model.float().eval()
    _perturb(model, seed)
    if hasattr(model.config, "_attn_implementation"):
        model.config._attn_implementation = "eager"
    return model


def _common(**extra) -> dict:
    base = dict(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=FFN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POS,
        initializer_range=INIT,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    base.update(extra)
    return base


def llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**_common(attention_bias=True, mlp_bias=True))
    return _build(LlamaForCausalLM, cfg, 1)


def mistral() -> nn.Module:
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(**_common(sliding_window=SLIDING, num_hidden_layers=3))
    return _build(MistralForCausalLM, cfg, 2)


def qwen2() -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**_common())
    return _build(Qwen2ForCausalLM, cfg, 3)


def qwen3() -> nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**_common(head_dim=16, attention_bias=True))
    return _build(Qwen3ForCausalLM, cfg, 4)


def gemma() -> nn.Module:
    from transformers import GemmaConfig, GemmaForCausalLM

    cfg = GemmaConfig(**_common(head_dim=16, hidden_activation="gelu_pytorch_tanh", attention_bias=True))
    return _build(GemmaForCausalLM, cfg, 5)


def gemma2() -> nn.Module:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(
        **_common(
            num_hidden_layers=3,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=SLIDING,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            attn_logit_softcapping=1.5,  # small caps so that soft-capping really bends the numbers
            final_logit_softcapping=2.0,
            attention_bias=True,
        )
    )
    return _build(Gemma2ForCausalLM, cfg, 6)


def gemma3_text() -> nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        **_common(
            num_hidden_layers=3,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=SLIDING,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            final_logit_softcapping=3.0,
        )
    )
    return _build(Gemma3ForCausalLM, cfg, 7)


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_embd=D,
        n_layer=2,
        n_head=HEADS,
        n_positions=MAX_POS,
        n_inner=FFN,
        initializer_range=INIT,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _build(GPT2LMHeadModel, cfg, 8)


def opt() -> nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        ffn_dim=FFN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        max_position_embeddings=MAX_POS,
        word_embed_proj_dim=D,
        do_layer_norm_before=True,
        enable_bias=True,
        init_std=INIT,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _build(OPTForCausalLM, cfg, 9)


def _neox(parallel: bool, seed: int) -> nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=FFN,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        max_position_embeddings=MAX_POS,
        rotary_pct=0.5,
        use_parallel_residual=parallel,
        initializer_range=INIT,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _build(GPTNeoXForCausalLM, cfg, seed)


def gpt_neox() -> nn.Module:
    return _neox(True, 10)


def gpt_neox_sequential() -> nn.Module:
    return _neox(False, 11)


def phi() -> nn.Module:
    from transformers import PhiConfig, PhiForCausalLM

    cfg = PhiConfig(
        **_common(partial_rotary_factor=0.5, qk_layernorm=True, hidden_act="gelu_new"),
    )
    return _build(PhiForCausalLM, cfg, 12)


def gptj() -> nn.Module:
    from transformers import GPTJConfig, GPTJForCausalLM

    cfg = GPTJConfig(
        vocab_size=VOCAB,
        n_embd=D,
        n_layer=2,
        n_head=HEADS,
        n_positions=MAX_POS,
        n_inner=FFN,
        rotary_dim=8,
        initializer_range=INIT,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _build(GPTJForCausalLM, cfg, 13)


def mixtral() -> nn.Module:
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(
        **_common(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, sliding_window=None)
    )
    return _build(MixtralForCausalLM, cfg, 14)


def qwen2_moe() -> nn.Module:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    cfg = Qwen2MoeConfig(
        **_common(
            num_hidden_layers=3,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            decoder_sparse_step=1,
            mlp_only_layers=[1],  # one dense layer in the middle: both FFN kinds in one model
            norm_topk_prob=False,
        )
    )
    return _build(Qwen2MoeForCausalLM, cfg, 15)


def qwen3_moe() -> nn.Module:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    cfg = Qwen3MoeConfig(
        **_common(
            head_dim=16,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            decoder_sparse_step=1,
            norm_topk_prob=True,
        )
    )
    return _build(Qwen3MoeForCausalLM, cfg, 16)


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "llama": llama,
    "mistral": mistral,
    "qwen2": qwen2,
    "qwen3": qwen3,
    "gemma": gemma,
    "gemma2": gemma2,
    "gemma3_text": gemma3_text,
    "gpt2": gpt2,
    "opt": opt,
    "gpt_neox": gpt_neox,
    "gpt_neox_sequential": gpt_neox_sequential,
    "phi": phi,
    "gptj": gptj,
    "mixtral": mixtral,
    "qwen2_moe": qwen2_moe,
    "qwen3_moe": qwen3_moe,
}

# Families whose blocks are parallel (attention and FFN both read the block input).
PARALLEL = {"gpt_neox", "phi", "gptj"}


WORDS = ["<unk>", "the", "capital", "of", "france", "is", "paris", "a", "b", "c"]


def save_tiny_model(folder, seed: int, tied: bool = False) -> nn.Module:
    """A tiny Llama saved as a local model folder (weights, config and a word-level tokenizer);
    `tied`: its output weights are its embedding (as SmolLM2's and Gemma's are)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   tie_word_embeddings=tied)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)
    return model


def save_tiny_gpt2(folder) -> nn.Module:
    """gpt2() (an attention output bias b_O, as every GPT-2) saved as a local model folder with
    the word-level tokenizer of save_tiny_model."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    model = gpt2()
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)
    return model
