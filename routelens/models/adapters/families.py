"""Every architecture family routelens decomposes exactly, declared (declare.py says what each field
means; docs/adding-a-model.md how to add one). A family's `tiny` configs are what the conformance kit
(tests/test_conformance.py) builds its random-weight test models from: each turns on the quirks
that family has (sliding windows, soft-caps, biases, multipliers), so that they are checked.
"""

from __future__ import annotations

from .bigcode import GPTBigCodeAdapter
from .bloom import BLOOM
from .declare import Family, Refuse, Values
from .falcon import FALCON
from .gpt_neo import GPT_NEO
from .moe import MoEAdapter
from .olmo import OLMoAdapter
from .opt import OPTAdapter

_BIASES = {"attention_bias": True, "mlp_bias": True}
_WINDOW = 4  # smaller than the kit's 10-token prompt, so that sliding windows really cut sources
_ALTERNATING = ["sliding_attention", "full_attention", "sliding_attention"]

_SMALL_HEADS = {"head_dim": 16}  # families whose default head_dim is 128: keep the kit's models tiny

LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3", "seed_oss", "ernie4_5", "arcee", "glm",
                 "jais2"),
    refuse=(Refuse("pretraining_tp", lambda tp: tp not in (1, None),
                   "Llama with pretraining_tp > 1 splits its projections; set pretraining_tp=1"),),
    tiny=(_BIASES, {"sliding_window": _WINDOW, "num_hidden_layers": 3, "no_rope_layer_interval": 2},
          {"head_dim": 16, "attention_bias": True, "partial_rotary_factor": 0.5}),
    notes="grouped-query attention; gated (or plain: Arcee, Jais 2) MLP, fused gate_up (GLM); RMSNorm "
          "(LayerNorm: Jais 2, by instance)",
)

_GEMMA_REFUSE = (Refuse("use_bidirectional_attention", bool,
                        "Gemma with bidirectional attention is not a causal LM; routes need causal attention"),)

GEMMA = Family(
    name="gemma",
    model_types=("gemma",),
    norm_offset=1.0,
    refuse=_GEMMA_REFUSE,
    tiny=({"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh", "attention_bias": True},),
    notes="RMSNorm with a (1 + w) gain",
)

GEMMA2 = Family(
    name="gemma",
    model_types=("gemma2", "gemma3_text"),
    norm_offset=1.0,
    attn_post_norm="post_attention_layernorm",
    ffn_post_norm="post_feedforward_layernorm",
    refuse=_GEMMA_REFUSE,
    tiny=({"num_hidden_layers": 3, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": _WINDOW,
           "layer_types": _ALTERNATING, "attn_logit_softcapping": 1.5, "final_logit_softcapping": 2.0,
           "attention_bias": True},),
    notes="sandwich norms after attention and FFN (linearised with the whole write's scale), soft-caps",
)

GPT2 = Family(
    name="gpt2",
    model_types=("gpt2",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="attn",
    attn_norm="ln_1",
    values=Values("attn.c_attn", "qkv"),
    out_proj="attn.c_proj",
    ffn_out="mlp.c_proj",
    norm="layer",
    gqa=False,
    refuse=(Refuse("add_cross_attention", bool, "GPT-2 with cross-attention is not a decoder-only LM"),),
    notes="fused q|k|v Conv1D, learned positions",
)

OPT = Family(
    name="opt",
    model_types=("opt",),
    layers="model.decoder.layers",
    final_norm="model.decoder.final_layer_norm",
    attn_norm="self_attn_layer_norm",
    out_proj="self_attn.out_proj",
    ffn="fc1",  # no FFN module: fc1 reads the normalised input, fc2's input is the neuron activation
    ffn_out="fc2",
    norm="layer",
    gqa=False,
    refuse=(Refuse("do_layer_norm_before", lambda before: before is False,
                   "OPT with do_layer_norm_before=False (e.g. opt-350m) normalises after the residual add, so the "
                   "residual stream is not a sum of writes and routes are undefined"),),
    tiny=({"do_layer_norm_before": True, "enable_bias": True, "word_embed_proj_dim": 48, "ffn_dim": 96},),
    adapter=OPTAdapter,
)

GPT_NEOX = Family(
    name="gpt_neox",
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    final_norm="gpt_neox.final_layer_norm",
    attn="attention",
    values=Values("attention.query_key_value", "per_head"),
    out_proj="attention.dense",
    ffn_out="mlp.dense_4h_to_h",
    parallel="use_parallel_residual",
    norm="layer",
    gqa=False,
    tiny=({"rotary_pct": 0.5, "use_parallel_residual": True}, {"rotary_pct": 0.5, "use_parallel_residual": False}),
    notes="Pythia; parallel blocks when use_parallel_residual",
)

PHI = Family(
    name="phi",
    model_types=("phi",),
    final_norm="model.final_layernorm",
    out_proj="self_attn.dense",
    ffn_out="mlp.fc2",
    parallel=True,
    norm="layer",
    tiny=({"partial_rotary_factor": 0.5, "qk_layernorm": True, "hidden_act": "gelu_new"},),
)

GPTJ = Family(
    name="gptj",
    model_types=("gptj",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="attn",
    attn_norm="ln_1",
    values=Values("attn.v_proj"),
    out_proj="attn.out_proj",
    ffn_out="mlp.fc_out",
    parallel=True,
    norm="layer",
    gqa=False,
    tiny=({"rotary_dim": 8},),
)

MOE = Family(
    name="moe",
    model_types=("mixtral", "qwen2_moe", "qwen3_moe"),
    ffn_out="mlp.down_proj?",  # dense layers of a mixed model have one; expert layers do not
    experts="mlp.experts?",
    tiny=(
        {"num_local_experts": 4, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
         "shared_expert_intermediate_size": 64, "decoder_sparse_step": 1, "sliding_window": None},
    ),
    adapter=MoEAdapter,
    notes="routed experts: neuron parts of the experts chosen at each position, weighted by the router",
)

HELIUM = Family(
    name="llama",
    model_types=("helium",),
    tiny=({"head_dim": 12, "attention_bias": True, "mlp_bias": True},),  # its o_proj assumes heads x head_dim == d
)

PHI3 = Family(
    name="phi3",
    model_types=("phi3",),
    values=Values("self_attn.qkv_proj", "qkv"),
    notes="fused q|k|v and gate|up projections",
)

OLMO = Family(
    name="olmo",
    model_types=("olmo",),
    adapter=OLMoAdapter,
    norm="layer",
    norm_eps=1e-5,  # OlmoLayerNorm has no parameters and a fixed epsilon
    tiny=({"clip_qkv": 0.5},),
    notes="LayerNorm without gain or bias; q/k/v clipping",
)

POST_NORM = Family(
    name="post-norm",
    model_types=("olmo2", "olmo3", "exaone4"),
    attn_norm=None,  # attention and FFN read the residual itself; their writes are normalised
    attn_post_norm="post_attention_layernorm",
    ffn_post_norm="post_feedforward_layernorm",
    tiny=({"sliding_window": _WINDOW, "layer_types": _ALTERNATING, "num_hidden_layers": 3},),
    notes="OLMo 2/3, EXAONE 4: RMSNorm after each write instead of before (linearised with the write's scale)",
)

GLM4 = Family(
    name="glm4",
    model_types=("glm4",),
    attn_post_norm="post_self_attn_layernorm",
    ffn_post_norm="post_mlp_layernorm",
    tiny=(_SMALL_HEADS,),
    notes="norms before and after each write",
)

APERTUS = Family(
    name="apertus",
    model_types=("apertus",),
    attn_norm="attention_layernorm",
    tiny=({"qk_norm": True},),
    notes="xIELU MLP without gate",
)

GRANITE = Family(
    name="granite",
    model_types=("granite",),
    write_scale="residual_multiplier",
    logit_divisor="logits_scaling",
    tiny=({"residual_multiplier": 0.6, "embedding_multiplier": 3.0, "attention_multiplier": 0.3,
           "logits_scaling": 2.5},),
    notes="every write multiplied by residual_multiplier; logits divided by logits_scaling",
)

COHERE = Family(
    name="cohere",
    model_types=("cohere", "cohere2"),
    parallel=True,
    norm="layer",
    logit_scale="logit_scale",
    tiny=({"logit_scale": 0.7, "use_qk_norm": False, "sliding_window": _WINDOW, "num_hidden_layers": 3,
           "layer_types": _ALTERNATING},),
    notes="parallel blocks off one LayerNorm without bias; logits times logit_scale",
)

STABLELM = Family(
    name="stablelm",
    model_types=("stablelm",),
    parallel="use_parallel_residual",
    norm="layer",
    tiny=({"partial_rotary_factor": 0.5, "use_qkv_bias": True, "qk_layernorm": True},
          {"use_parallel_residual": True, "partial_rotary_factor": 0.5}),
)

STARCODER2 = Family(
    name="starcoder2",
    model_types=("starcoder2",),
    ffn_out="mlp.c_proj",
    norm="layer",
    tiny=({"use_bias": True, "sliding_window": _WINDOW},),
)

NEMOTRON = Family(
    name="nemotron",
    model_types=("nemotron",),
    norm="layer",
    norm_offset=1.0,
    tiny=({"partial_rotary_factor": 0.5},),
    notes="LayerNorm1P: a (1 + w) gain",
)

PERSIMMON = Family(
    name="persimmon",
    model_types=("persimmon",),
    final_norm="model.final_layernorm",
    values=Values("self_attn.query_key_value", "per_head"),
    out_proj="self_attn.dense",
    ffn_out="mlp.dense_4h_to_h",
    norm="layer",
    gqa=False,
    tiny=({"qk_layernorm": True, "partial_rotary_factor": 0.5},),
)

BIOGPT = Family(
    name="biogpt",
    model_types=("biogpt",),
    layers="biogpt.layers",
    final_norm="biogpt.layer_norm",
    attn_norm="self_attn_layer_norm",
    out_proj="self_attn.out_proj",
    ffn="fc1",
    ffn_out="fc2",
    norm="layer",
    gqa=False,
    tiny=({"scale_embedding": True},),
)

GPT_BIGCODE = Family(
    name="gpt_bigcode",
    model_types=("gpt_bigcode",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="attn",
    attn_norm="ln_1",
    values=Values("attn.c_attn", "qkv"),
    out_proj="attn.c_proj",
    ffn_out="mlp.c_proj",
    norm="layer",
    refuse=(Refuse("add_cross_attention", bool, "GPT-BigCode with cross-attention is not a decoder-only LM"),),
    tiny=({"multi_query": True}, {"multi_query": False}),
    adapter=GPTBigCodeAdapter,
    notes="multi-query attention",
)

GEMMA3 = Family(
    name="gemma",
    model_types=("gemma3",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    norm_offset=1.0,
    attn_post_norm="post_attention_layernorm",
    ffn_post_norm="post_feedforward_layernorm",
    text_config="text_config",
    final_softcap=False,
    refuse=_GEMMA_REFUSE,
    tiny=({"text_config": {"num_hidden_layers": 3, "head_dim": 16, "query_pre_attn_scalar": 16,
                           "sliding_window": _WINDOW, "layer_types": _ALTERNATING, "final_logit_softcapping": 3.0},
           "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
           "mm_tokens_per_image": 4},),
    notes="a multimodal Gemma 3 checkpoint: routes of its text decoder",
)

FAMILIES: tuple[Family, ...] = (LLAMA, HELIUM, GEMMA, GEMMA2, GEMMA3, GPT2, OPT, GPT_NEOX, PHI, GPTJ, MOE, PHI3, OLMO, POST_NORM,
                                GLM4, APERTUS, GRANITE, COHERE, STABLELM, STARCODER2, NEMOTRON, PERSIMMON, BIOGPT,
                                GPT_BIGCODE, GPT_NEO, BLOOM, FALCON)
