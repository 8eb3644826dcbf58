"""Attacks on the replay design (trace/attention.py, trace/capture.py, routes/qk.py): the user's
own model keeps working once wrapped, and one model used from several threads gives each caller
its own numbers."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

import routelens as rl

from tiny_models import FAMILIES, PROMPT, TinyTokenizer


def wrap_with_reference(name: str) -> tuple[rl.Model, torch.nn.Module]:
    hf = FAMILIES[name]()
    reference = copy.deepcopy(hf)  # stays eager: what the user had before wrapping
    return rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}"), reference


# ---- the user's model after wrapping -----------------------------------------------------------
@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt2"])
def test_wrapped_model_still_returns_attentions_when_asked(name):
    """output_attentions=True on the wrapped model answers eager's patterns, not an empty tuple."""
    model, reference = wrap_with_reference(name)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = reference(ids, output_attentions=True).attentions
        got = model.hf_model(ids, output_attentions=True).attentions
    assert len(got) == len(want) == model.adapter.n_layers
    for a, b in zip(got, want):
        assert a is not None and torch.allclose(a, b, atol=1e-6)
    # a padded batch of two too
    batch = torch.tensor([PROMPT, [0, 0] + PROMPT[2:]])
    mask = torch.tensor([[1] * len(PROMPT), [0, 0] + [1] * (len(PROMPT) - 2)])
    with torch.no_grad():
        want = reference(batch, attention_mask=mask, output_attentions=True).attentions
        got = model.hf_model(batch, attention_mask=mask, output_attentions=True).attentions
    assert len(got) == len(want) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))


def test_wrapped_model_generates_as_eager():
    model, reference = wrap_with_reference("gemma3_text")
    ids = torch.tensor([PROMPT])
    want = reference.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(model.hf_model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0), want)
    assert model.trace(PROMPT, store=False).check().ok  # and tracing after generating is unharmed


# ---- one model, several threads ----------------------------------------------------------------
def _in_threads(*jobs) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(job):
        try:
            job()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_traces_of_one_model_at_once_keep_their_own_residual_stream():
    """Hooks are seen by every thread that runs the module: two traces at once must not record
    each other's tensors (a trace of one prompt holding another prompt's numbers)."""
    model = rl.wrap(FAMILIES["llama"](), TinyTokenizer(), name="tiny-llama")
    other = [(7 * p + 1) % 97 for p in PROMPT]  # same length: shapes cannot tell them apart
    refs = {tuple(p): [model.trace(p, store=False).resid(i).clone() for i in range(3)] for p in (PROMPT, other)}
    wrong: list[tuple] = []

    def job(prompt):
        def go():
            for _ in range(40):
                trace = model.trace(prompt, store=False)
                wrong.extend((prompt[0], i) for i in range(3) if not torch.equal(trace.resid(i), refs[tuple(prompt)][i]))
        return go

    assert _in_threads(job(PROMPT), job(other)) == []
    assert wrong == []


def test_replays_and_why_attends_on_one_trace_from_two_threads():
    model = rl.wrap(FAMILIES["llama"](), TinyTokenizer(), name="tiny-llama")
    trace = model.trace(PROMPT, store=False)
    ref = trace.capture.layers[1]
    want = trace.why_attends(1, 0, 9, 7).contributions.clone()
    wrong: list[str] = []

    def replays():
        for _ in range(150):
            trace.capture.layers.clear()
            layer = trace.capture.layers[1]
            for field in ("attn_in", "attn_out", "ffn_in", "ffn_act", "ffn_out", "resid_out"):
                if not torch.equal(getattr(layer, field), getattr(ref, field)):
                    wrong.append(field)

    def why():
        for _ in range(60):
            if not torch.equal(trace.why_attends(1, 0, 9, 7).contributions, want):
                wrong.append("why_attends")

    assert _in_threads(replays, why) == []
    assert wrong == []


def test_a_stored_trace_read_back_while_another_traces():
    """A stored trace rebuilds its block calls by swapping every block's forward for the identity:
    a trace running meanwhile in another thread must not run through identity blocks."""
    from routelens.trace.capture import record_block_calls

    model = rl.wrap(FAMILIES["llama"](), TinyTokenizer(), name="tiny-llama")
    ids = torch.tensor(PROMPT)
    ref = [model.trace(PROMPT, store=False).resid(i).clone() for i in range(3)]
    wrong: list[int] = []

    def identity_runs():
        for _ in range(80):
            record_block_calls(model.adapter, ids)

    def traces():
        for _ in range(40):
            t = model.trace(PROMPT, store=False)
            wrong.extend(i for i in range(3) if not torch.equal(t.resid(i), ref[i]))

    assert _in_threads(identity_runs, traces) == []
    assert wrong == []


# ---- estimates -----------------------------------------------------------------------------------
# ---- non-finite numbers, located by replaying the layer (no fault found: kept as guards) ------------
def _overflow_query_row(model: rl.Model, layer: int, pos: int) -> None:
    def hook(_module, _inputs, out):
        out = out.clone()
        out[0, pos] = 6e4  # its scores overflow float16: that pattern row is NaN, and only it
        return out

    model.hf_model.model.layers[layer].self_attn.q_proj.register_forward_hook(hook)


@pytest.mark.parametrize("block", [1 << 23, 40])  # one block of rows, or one row per block
def test_nan_pattern_row_is_found_at_its_query_position(block, monkeypatch):
    from routelens.trace import attention

    monkeypatch.setattr(attention, "ROW_BLOCK_ELEMENTS", block)
    model = rl.wrap(FAMILIES["llama"]().half(), TinyTokenizer(), name="tiny-llama")
    _overflow_query_row(model, 1, 7)
    with pytest.raises(rl.NonFiniteError) as caught:
        model.trace(PROMPT, store=False)
    assert (caught.value.layer, caught.value.pos, caught.value.part) == (1, 7, "attention pattern")


def test_gemma2_post_norm_overflow_names_the_write():
    hf = FAMILIES["gemma2"]().half()
    with torch.no_grad():
        hf.model.layers[0].post_attention_layernorm.weight.fill_(60000)
    with pytest.raises(rl.NonFiniteError) as caught:
        rl.wrap(hf, TinyTokenizer(), name="tiny-gemma2").trace(PROMPT, store=False)
    assert (caught.value.layer, caught.value.part) == (0, "attention write")
