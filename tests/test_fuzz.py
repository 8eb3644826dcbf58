"""Property-based fuzzing of every API endpoint (docs/api.md) with hypothesis.

Whatever the parameters, query strings or bodies (unicode, control characters, huge or malformed
numbers, wrong JSON types, extra or missing keys, broken JSON bytes, bodies over the limit,
repeated query keys, unknown paths and methods, bogus trace ids and tokens), the property is:

- no response is a 5xx (the documented 503s for the time limit / out of memory cannot happen here),
  and the server keeps serving;
- every refusal is a 4xx with the JSON body `{"error": {"code": str, "message": str}}` whose
  message is non-empty and says what to do;
- a request that is valid (by the contract) gets 200 with the documented shape.

The app runs in process (TestClient) and serves a tiny local Llama (tests/tiny_models.py) with one
prompt traced; the detail endpoints are fuzzed against that trace id and against bogus ones.
Hypothesis is derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routelens.prompts import prompt_lines
from routelens.server.app import create_app
from routelens.server.config import ServerConfig
from tiny_models import WORDS, save_tiny_model
from servers import LOCAL

TOKEN = "fuzz-token-0123456789"
MAX_BODY = 4096  # small, so bodies over the limit are cheap to make
MAX_CHARS = 200  # max_user_string_length
MAX_TOKENS = 24  # max_prompt_tokens (the tiny model reads 32)
PROMPT = "the capital of france is"
DATASET = {"prompts.txt": "the capital\n\n  of france  \nparis\n", "sub/inner.txt": "a b c\n"}
FORMATS = {"json": "application/json", "graphml": "application/graphml+xml", "svg": "image/svg+xml", "png": "image/png",
           "html": "text/html"}

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.large_base_example])


def fuzz(n: int):
    """Settings of one fuzz test: `n` generated cases (all the tests add up to well over 500)."""
    return settings(FUZZ, max_examples=n)


# ---- the servers ---------------------------------------------------------------------------------
class Served:
    """A running app with the traced prompt: its id and the model's sizes."""

    def __init__(self, client: TestClient, tid: str, n_pos: int, n_layers: int, n_heads: int, vocab: int, d_ffn: int,
                 graph: dict) -> None:
        self.client, self.tid, self.n_pos, self.n_layers, self.n_heads = client, tid, n_pos, n_layers, n_heads
        self.vocab, self.d_ffn, self.graph = vocab, d_ffn, graph

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing case
        return f"Served(trace {self.tid})"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    save_tiny_model(root / "m", seed=21)
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "dir").mkdir()
    for name, text in DATASET.items():
        (data / name).write_text(text, encoding="utf-8")
    (data / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (data / "big.txt").write_bytes(b"a\n" * 600_000)
    (root / "secret.txt").write_text("outside the dataset folder\n")
    (data / "escape.txt").symlink_to(root / "secret.txt")
    return root


def config(folder: Path, **settings: Any) -> ServerConfig:
    return ServerConfig(models={"tiny": str(folder / "m")}, default_model="tiny", store=False, allow_custom_models=False,
                        max_body_bytes=MAX_BODY, max_user_string_length=MAX_CHARS, max_prompt_tokens=MAX_TOKENS,
                        max_traces=10_000, dataset_dir=folder / "data", **settings)


def served_by(client: TestClient, **headers: str) -> Served:
    r = client.post("/api/trace", json={"model": "tiny", "prompt": PROMPT}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    slot = client.app.state.registry.get("tiny", 60)
    graph = client.get(f"/api/trace/{body['trace_id']}/graph", params={"threshold": 0.01}, headers=headers).json()
    return Served(client, body["trace_id"], len(body["tokens"]), body["n_layers"], body["n_heads"], body["facts"]["vocab"],
                  slot.model.hf_model.config.intermediate_size, graph)


@pytest.fixture(scope="module")
def served(folder) -> Iterator[Served]:
    """The main server: no token, no debug, custom models off, dataset files on."""
    with TestClient(create_app(config(folder), preload=False), base_url=LOCAL, raise_server_exceptions=False) as client:
        yield served_by(client)


@pytest.fixture(scope="module")
def secured(folder) -> Iterator[Served]:
    """A server with an access token, in demo mode, with debug figures on."""
    # wrong tokens are this fuzzer's point: the limit on guesses (tested in test_doors.py) stays out of its way
    cfg = config(folder, access_token=TOKEN, debug=True, demo_mode=True, max_wrong_tokens_per_minute=10**9)
    with TestClient(create_app(cfg, preload=False), base_url=LOCAL, raise_server_exceptions=False) as client:
        yield served_by(client, authorization=f"Bearer {TOKEN}")


# ---- the property ----------------------------------------------------------------------------------
# what to do: an instruction, the documentation, or the values that would be accepted
ADVICE = re.compile(
    r"\b(use|try|give|send|run|see|raise|lower|shorten|choose|pick|enter|ask|name|type|split|check|trace|start|"
    r"come back|wait|save|one of|at most|at least)\b|/api/docs|\d\.\.\d", re.IGNORECASE)


SEEN: defaultdict[str, Counter] = defaultdict(Counter)  # test -> statuses of the responses it checked


def check(r: Any, expect: int | str | None = None, code: str | None = None) -> Any:
    """The fuzzing property for one response; `expect`: an exact status, "ok" (200), "reject" (a 4xx)
    or None (either); `code`: the error code a refusal must have. Returns the JSON body (or None)."""
    where = f"{r.request.method} {r.request.url}"
    SEEN[os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]][r.status_code] += 1
    assert r.status_code < 500, f"{where} -> {r.status_code}: {r.text[:800]}"
    if r.status_code >= 400 and r.request.method != "HEAD":  # (a HEAD answer has no body)
        assert r.headers.get("content-type", "").startswith("application/json"), \
            f"{where} -> {r.status_code} not JSON: {r.text[:300]}"
        body = r.json()
        assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"code", "message"}, f"{where}: {body}"
        assert isinstance(error["code"], str) and re.fullmatch(r"[a-z_]+", error["code"]), f"{where}: {body}"
        message = error["message"]
        assert isinstance(message, str) and message.strip(), f"{where}: empty message {body}"
        assert len(message.split()) >= 4 and ADVICE.search(message), \
            f"{where}: the message does not say what to do: {message!r}"
        if code is not None:
            assert error["code"] == code, f"{where}: expected {code}, got {body}"
    if expect == "ok":
        assert r.status_code == 200, f"{where} should be accepted -> {r.status_code}: {r.text[:500]}"
    elif expect == "reject":
        assert 400 <= r.status_code < 500, f"{where} should be refused -> {r.status_code}: {r.text[:300]}"
    elif isinstance(expect, int):
        assert r.status_code == expect, f"{where} -> {r.status_code}, expected {expect}: {r.text[:500]}"
    if r.request.method == "HEAD" or not r.headers.get("content-type", "").startswith("application/json"):
        return None
    return r.json()


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_tokens(items: Any, keys: set[str], vocab: int) -> None:
    assert isinstance(items, list)
    keys = keys | {"bytes"}  # every token carries its bytes as hex (models/tokens.py)
    for item in items:
        assert set(item) == keys, item
        assert isinstance(item["token"], str) and isinstance(item["id"], int) and 0 <= item["id"] < vocab
        assert isinstance(item["bytes"], str) and re.fullmatch(r"(?:[0-9a-f]{2})*", item["bytes"]), item
        for key in keys - {"token", "id", "rank_change", "bytes"}:
            assert is_num(item[key]), item
        if "rank_change" in keys:
            assert item["rank_change"] is None or isinstance(item["rank_change"], int)


def check_effects(body: dict, vocab: int) -> None:
    check_tokens(body["promoted"], {"token", "id", "effect"}, vocab)
    check_tokens(body["suppressed"], {"token", "id", "effect"}, vocab)


FACTS = {"name", "family", "model_type", "n_layers", "n_heads", "n_kv_heads", "d_model", "head_dim", "vocab",
         "parameters", "context_length", "device", "dtype", "parallel_blocks"}


def check_status_shape(body: dict, model: str) -> None:
    assert set(body) == {"model", "state", "stage", "elapsed", "message", "facts"}
    assert body["model"] == model and body["state"] in ("absent", "loading", "ready", "error")
    assert is_num(body["elapsed"]) and isinstance(body["message"], str)
    assert body["facts"] is None or FACTS <= set(body["facts"])


def check_graph_shape(body: dict, s: Served) -> None:
    assert body["schema"] == "routelens.graph/2"
    ids = set()
    for node in body["nodes"]:
        assert {"id", "layer", "pos", "kind"} <= set(node) and node["kind"] in ("embed", "attn", "ffn", "block")
        assert -1 <= node["layer"] < s.n_layers and 0 <= node["pos"] < s.n_pos
        ids.add(node["id"])
    for edge in body["edges"]:
        assert {"source", "target", "kind", "weight"} <= set(edge) and is_num(edge["weight"])
        assert edge["source"] in ids and edge["target"] in ids


# ---- strategies --------------------------------------------------------------------------------------
ODD = [
    "", " ", "\t\n", "\x00", "\x7f", "\u200b", "\u202e", "\ufeff", "-", "+", "-0", "+1", " 1", "1 ", "1.0", "1.5", "1e3",
    "0x10", "1_000", "١", "nan", "NaN", "inf", "-inf", "1e309", "-0.0", "true", "false", "null", "None", "[]", "{}",
    "[1]", "'1'", '"1"', "%00", "%2F", "..", "../../etc/passwd", "/etc/passwd", "C:\\Windows", "a/../b", "./x", "~",
    "\\\\server\\share", "🙂", "ﬀ", "𝟙", "ＡＢＣ", "<script>alert(1)</script>", "' OR 1=1 --", "${HOME}", "$(id)",
    str(2**63), str(-(2**63) - 1), "9" * 40, "-" + "9" * 40,
]
texts = st.one_of(
    st.text(max_size=30),  # any unicode (control characters included; no lone surrogates: URLs cannot carry them)
    st.sampled_from(ODD),
    st.integers().map(str),
    st.floats().map(repr),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "🙂", "/", " ", "9", "\x01"]), st.integers(200, 1500)),
)


@dataclass(frozen=True)
class Param:
    """How to fuzz one query parameter: valid values, odd ones (out of range, wrong case) and junk text,
    each drawn as (text sent, what it means: the int / float / str, or None when not a clean value)."""

    valid: st.SearchStrategy
    odd: st.SearchStrategy
    junk: st.SearchStrategy

    def mixed(self) -> st.SearchStrategy:
        return st.integers(0, 9).flatmap(lambda roll: self.valid if roll < 6 else self.odd if roll < 8 else self.junk)


def ints(lo: int, hi: int) -> Param:
    """An int parameter valid in lo..hi."""
    return Param(
        st.integers(lo, hi).map(lambda v: (str(v), v)),
        st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([lo - 1, hi + 1, -(10**30), 10**30])).map(
            lambda v: (str(v), v)),
        texts.map(lambda t: (t, int(t) if re.fullmatch(r"-?[0-9]+", t) else None)),
    )


def floats01() -> Param:
    """A threshold (valid in 0..1)."""
    return Param(
        st.one_of(st.floats(0, 1), st.floats(0, 0.3), st.sampled_from([0.0, 1.0, 0.5, -0.0, 1e-300, 5e-324])).map(
            lambda v: (repr(v), v)),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1.0000001, -1e-300, 2.0, -1.0])).map(
            lambda v: (repr(v), v)),
        texts.map(lambda t: (t, float(t) if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", t) else None)),
    )


def choice(options: list[str]) -> Param:
    """A string parameter valid in `options`."""
    return Param(st.sampled_from(options).map(lambda t: (t, t)),
                 st.sampled_from([o.upper() for o in options] + [o + " " for o in options]).map(lambda t: (t, t)),
                 texts.map(lambda t: (t, t)))


@st.composite
def query(draw, params: dict[str, Param]) -> tuple[str, dict[str, Any], bool]:
    """A query string for `params`: all valid, one of them odd (or left out), or any mix; sometimes a key
    repeated, unknown keys added, broken escapes appended. Returns (query string, {name: meaning} of the
    parameters sent, whether those meanings are exactly what the server reads)."""
    mode = draw(st.sampled_from(["valid", "valid", "one", "one", "mixed"]))
    names = list(params)
    bad = draw(st.sampled_from(names)) if names else None
    pairs: list[tuple[str, str]] = []
    meaning: dict[str, Any] = {}
    exact = True
    for name, param in params.items():
        if mode == "valid" or (mode == "one" and name != bad):
            strategy = param.valid
        elif mode == "one" or draw(st.integers(0, 5)) > 0:
            strategy = param.mixed() if mode == "mixed" else st.one_of(param.odd, param.junk)
        else:
            continue  # left out
        if mode == "one" and name == bad and draw(st.integers(0, 4)) == 0:
            continue  # left out
        text, value = draw(strategy)
        pairs.append((name, text))
        meaning[name] = value
        if draw(st.integers(0, 14)) == 0:  # repeated key: which value counts is the framework's business
            pairs.append((name, draw(texts)))
            exact = False
    for _ in range(draw(st.integers(0, 2))):  # unknown keys are ignored
        key = draw(st.sampled_from(["x", "access_token", "format_", "layers", "", "k[]", "a b", "é"]))
        pairs.append((key, draw(texts)))
    order = draw(st.permutations(range(len(pairs))))
    qs = "&".join(f"{quote(pairs[i][0], safe='')}={quote(pairs[i][1], safe='')}" for i in order)
    if draw(st.integers(0, 19)) == 0:  # broken escapes and separators
        qs += draw(st.sampled_from(["&", "&&", "%", "%zz", "%ff%fe", "=", "&=&", ";x=1", "&k", "%E2%82"]))
        exact = False
    return qs, meaning, exact


def trace_ids(s: Served) -> st.SearchStrategy[tuple[str, bool]]:
    """The traced prompt's id (mostly) or a bogus one: (id, real?)."""
    bogus = st.one_of(st.sampled_from([s.tid.upper(), s.tid[:-1], s.tid + "0", "0" * 16, "-1", "None", "null"]),
                      texts.filter(lambda t: t != s.tid))
    return st.integers(0, 9).flatmap(lambda roll: st.just((s.tid, True)) if roll < 8 else bogus.map(lambda t: (t, False)))


def get(client: TestClient, path: str, qs: str, **kw: Any) -> Any:
    return client.get(path + ("?" + qs if qs else ""), **kw)


def in_range(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and lo <= v <= hi


def position(v: Any, s: Served) -> int | None:
    return v % s.n_pos if in_range(v, -s.n_pos, s.n_pos - 1) else None


def expected(meaning: dict[str, Any], exact: bool, real: bool, valid: bool | None) -> str | None:
    """What the response must be: "ok", "reject" or None (cannot tell from the meanings)."""
    if not real:
        return "reject"
    if not exact or valid is None:
        return None
    return "ok" if valid else "reject"


# ---- models -----------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


surrogates = st.text(alphabet=st.characters(categories=["Cs", "Ll", "Zs"]), min_size=1, max_size=8).filter(
    lambda t: any(0xD800 <= ord(c) <= 0xDFFF for c in t))


def send_json(client: TestClient, path: str, body: Any, ascii_only: bool = True, **headers: str) -> Any:
    try:
        data = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only escaped it is JSON text
        data = json.dumps(body).encode("utf-8")
    return client.post(path, content=data, headers={"content-type": "application/json", **headers}), len(data)


@given(
    model=st.integers(0, 9).flatmap(lambda roll: st.sampled_from(["tiny", " tiny", "tiny\n"]) if roll < 4 else st.one_of(
        st.sampled_from(["TINY", "tiny2", "gpt2", "", " ", "../m", "/etc"]), texts, json_values, surrogates)),
    shape=st.sampled_from(["plain", "plain", "extra", "missing", "list", "scalar"]),
    ascii_only=st.booleans(),
)
@fuzz(50)
def test_fuzz_models_load(served, model, shape, ascii_only):
    body: Any = {"model": model}
    if shape == "extra":
        body["revision"] = "main"
    elif shape == "missing":
        body = {"name": model}
    elif shape == "list":
        body = [body]
    elif shape == "scalar":
        body = model
    r, size = send_json(served.client, "/api/models/load", body, ascii_only)
    if size > MAX_BODY:
        check(r, 413, "body_too_large")
    elif shape != "plain" or not isinstance(model, str):
        check(r, 422, "invalid_argument")
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in model):
        check(r, 422, "invalid_argument")  # not text
    elif model.strip() == "tiny":
        out = check(r, 200)
        check_status_shape(out, "tiny")
        assert out["state"] == "ready"
    elif not model.strip():
        check(r, 404, "unknown_model")
    else:
        check(r, "reject")  # not a configured model: custom models are off (403), or not text (422)


@given(q=query({"model": Param(st.just(("tiny", "tiny")), texts.map(lambda t: (t, t)), st.just(("", "")))}))
@fuzz(30)
def test_fuzz_models_status(served, q):
    qs, meaning, exact = q
    r = get(served.client, "/api/models/status", qs)
    body = check(r)
    if exact and "model" in meaning and meaning["model"]:
        assert r.status_code == 200, r.text
        check_status_shape(body, meaning["model"])
        assert body["state"] == ("ready" if meaning["model"] == "tiny" else "absent")
    elif exact:
        check(r, 422)


# ---- traces -----------------------------------------------------------------------------------------
words = st.lists(st.sampled_from(WORDS[1:]), min_size=1, max_size=30).map(" ".join)
TRACE_FIELDS = {  # (valid values, odd ones); None: the key is left out
    "model": (st.sampled_from([None, "tiny", " tiny ", "tiny\n", ""]),
              st.one_of(st.sampled_from(["tiny2", "TINY", " ", "gpt2", "../m"]), texts, json_values, surrogates)),
    "prompt": (words, st.one_of(texts, st.text(min_size=1, max_size=60), surrogates, json_values,
                                words.map(lambda w: w + " \ud800"),
                                st.sampled_from([" ", "\n\t", "\u3000", "\u200b", "。"]))),
    "chat": (st.sampled_from([None, False]), st.one_of(st.just(True), json_values)),
    "norm": (st.sampled_from([None, "l1", "l2"]), st.one_of(st.sampled_from(["L1", "l3", "", "l1 "]), json_values)),
}


@st.composite
def trace_bodies(draw) -> dict[str, Any]:
    """A body for POST /api/trace: all valid, one field odd (or an extra key), or anything."""
    mode = draw(st.sampled_from(["valid", "valid", "one", "one", "mixed"]))
    bad = draw(st.sampled_from([*TRACE_FIELDS, "extra"]))
    body: dict[str, Any] = {}
    for name, (valid, odd) in TRACE_FIELDS.items():
        if mode == "valid" or (mode == "one" and name != bad):
            value = draw(valid)
        elif mode == "one":
            value = draw(odd)
        else:
            value = draw(st.one_of(valid, odd))
        if value is not None or name == "prompt" and draw(st.integers(0, 3)) > 0:
            body[name] = value
    if bad == "extra" and mode != "valid":
        keys = st.one_of(st.sampled_from(["Model", "prompts", "k", "threshold", ""]), st.text(max_size=10))
        extra = draw(st.dictionaries(keys, json_values, min_size=1, max_size=2))
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


@given(body=trace_bodies(), ascii_only=st.booleans())
@fuzz(100)
def test_fuzz_trace(served, body, ascii_only):
    model, prompt, chat, norm = (body.get(k) for k in ("model", "prompt", "chat", "norm"))
    extra_keys = set(body) - {"model", "prompt", "chat", "norm"}
    r, size = send_json(served.client, "/api/trace", body, ascii_only)
    if size > MAX_BODY:
        check(r, 413, "body_too_large")
        return
    if extra_keys or not isinstance(prompt, str) or not isinstance(model, (str, type(None))):
        check(r, 422, "invalid_argument")
        return
    if not isinstance(norm, (str, type(None))) or norm not in ("l1", "l2", None):
        check(r, 422, "invalid_argument")
        return
    if not isinstance(chat, (bool, type(None))):
        check(r, "reject")  # pydantic reads "yes", 1, ... as booleans; others are refused
        return
    if any(0xD800 <= ord(c) <= 0xDFFF for c in prompt + (model or "")):
        check(r, 422, "invalid_argument")  # not text: a lone surrogate
        return
    name = (model or "tiny").strip()  # no model (or "") is the default model
    if not name:
        check(r, 404, "unknown_model")
    elif not prompt.strip():
        check(r, 422, "empty_prompt")
    elif len(prompt) > MAX_CHARS:
        check(r, 413, "prompt_too_long")
    elif name != "tiny":
        check(r, 403, "forbidden")
    elif chat:
        check(r, 422, "invalid_argument")  # the tiny model has no chat template
    elif re.fullmatch(r"[a-z ]+", prompt) and len(prompt.split()) > MAX_TOKENS:
        check(r, 413, "prompt_too_long")
    else:
        out = check(r)
        if r.status_code != 200:  # tokens over the limit, or none at all
            assert r.json()["error"]["code"] in ("prompt_too_long", "empty_prompt"), r.text
            return
        assert set(out) == {"trace_id", "model", "facts", "tokens", "token_bytes", "token_ids", "n_layers", "n_heads",
                            "parallel", "predictions", "timings", "estimate", "measured", "generation"}
        assert out["generation"] is None  # no generate asked
        assert out["model"] == "tiny" and FACTS <= set(out["facts"]) and 1 <= len(out["tokens"]) <= MAX_TOKENS
        assert len(out["token_ids"]) == len(out["tokens"]) == len(out["predictions"])
        assert len(out["token_bytes"]) == len(out["tokens"])
        for p in out["predictions"]:
            assert len(p) == 5
            check_tokens(p, {"token", "id", "prob"}, 10**9)
        assert set(out["timings"]) == {"forward", "total", "cached", "stored"}
        if re.fullmatch(r"[a-z ]+", prompt):
            assert len(out["tokens"]) == len(prompt.split())


BAD_BODIES = [
    b"", b"{", b"}", b"{]", b'{"prompt": }', b'{"prompt": "the"', b'{"prompt": "the",}', b"{'prompt': 'the'}",
    b'{"prompt": "the"}{"prompt": "the"}', b'{"prompt": "the"} x', b"null", b"true", b"0", b"[]", b'"the"', b"NaN",
    b'{"prompt": NaN}', b'{"prompt": Infinity}', b'{"prompt": "\\ud800"}', b'{"prompt": "\\u00"}',
    b'{"prompt": "\xff\xfe"}', b"\xef\xbb\xbf{\"prompt\": \"the\"}", b'\x00{"prompt": "the"}', b'{"prompt": "the\x00"}',
    b'{"prompt": "the", "prompt": "is"}', b'{"__proto__": {}}', b"[" * 3000, b"{\"a\":" * 1200, b'{"prompt": 1e999999}',
    b'{"prompt": "the", "chat": "yes"}', b'{"prompt": "the", "chat": 2}', b'{"prompt": "the", "norm": null}',
]


@given(
    path=st.sampled_from(["/api/trace", "/api/models/load"]),
    data=st.one_of(st.sampled_from(BAD_BODIES), st.binary(max_size=300),
                   st.builds(lambda b, n: b * n, st.sampled_from([b"a", b"[", b'{"prompt":"', b"\xff", b" "]),
                             st.integers(1000, 6000)),
                   st.builds(lambda body, cut: body[:cut], st.just(b'{"model": "tiny", "prompt": "the capital"}'),
                             st.integers(0, 40))),
    content_type=st.sampled_from(["application/json", "application/json", "application/json; charset=latin-1",
                                  "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                  "", "application/json; charset=utf-16"]),
    chunked=st.booleans(),
)
@fuzz(60)
def test_fuzz_raw_bodies(served, path, data, content_type, chunked):
    """Bytes that are not (valid) JSON, sent with any content type, announced or streamed."""
    headers = {"content-type": content_type} if content_type else {}
    content: Any = iter([data[: len(data) // 2], data[len(data) // 2:]]) if chunked else data
    r = served.client.post(path, content=content, headers=headers)
    if content_type.split(";")[0] != "application/json":  # no cross-site request can send JSON: refused first
        check(r, 415, "unsupported_media_type")
    elif len(data) > MAX_BODY:
        check(r, 413, "body_too_large")
    else:
        check(r)


def test_fuzz_malformed_json_is_bad_request(served):
    """The documented answer to malformed JSON: 400 bad_request (not a fuzz case: a fixed list)."""
    for data in [b"{", b'{"prompt": }', b"{'prompt': 'the'}", b'{"prompt": "the"} x', b'{"prompt": "the",}']:
        r = served.client.post("/api/trace", content=data, headers={"content-type": "application/json"})
        check(r, 400, "bad_request")


# ---- the trace's details ---------------------------------------------------------------------------
DETAIL = ["graph", "export", "node", "edge", "head", "ffn", "neuron", "attribution", "verify"]


@given(data=st.data())
@fuzz(40)
def test_fuzz_graph(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"target": ints(-s.n_pos, s.n_pos - 1), "threshold": floats01()}))
    target, threshold = m.get("target", -1), m.get("threshold", 0.04)
    valid = None if target is None or threshold is None else (
        position(target, s) is not None and isinstance(threshold, float) and 0 <= threshold <= 1)
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/graph", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        check_graph_shape(body, s)
        if valid:
            assert body["target"]["pos"] == position(target, s) and body["threshold"] == threshold


@given(data=st.data())
@fuzz(30)
def test_fuzz_export(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"format": choice(list(FORMATS)), "target": ints(-s.n_pos, s.n_pos - 1),
                                    "threshold": floats01()}))
    fmt, target, threshold = m.get("format", "json"), m.get("target", -1), m.get("threshold", 0.04)
    valid = None if target is None or threshold is None else (
        fmt in FORMATS and position(target, s) is not None and isinstance(threshold, float) and 0 <= threshold <= 1)
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/export", qs)
    check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        if valid:
            assert r.headers["content-type"].startswith(FORMATS[fmt]) and r.content


@given(data=st.data())
@fuzz(60)
def test_fuzz_node(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({
        "kind": choice(["block", "attn", "embed"]), "layer": ints(0, s.n_layers - 1), "pos": ints(-s.n_pos, s.n_pos - 1),
        "k": ints(1, 100), "norm": ints(0, 1)}))
    kind, layer, pos, k, norm = m.get("kind"), m.get("layer", -1), m.get("pos"), m.get("k", 10), m.get("norm", 1)
    if None in (layer, k, norm) or "pos" in m and pos is None:
        valid = None
    else:
        valid = (kind in ("block", "attn", "embed") and position(pos, s) is not None and in_range(k, 1, 100)
                 and in_range(norm, 0, 1) and (kind == "embed" or in_range(layer, 0, s.n_layers - 1)))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/node", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert set(body) == {"top_tokens", "promoted", "suppressed", "bias"}
        assert body["bias"] is None if kind == "embed" else is_num(body["bias"]) and 0 <= body["bias"] <= 1
        check_tokens(body["top_tokens"], {"token", "id", "prob", "rank", "rank_change"}, s.vocab)
        check_effects(body, s.vocab)
        if valid:
            assert len(body["top_tokens"]) == min(k, s.vocab)
            assert [t["rank"] for t in body["top_tokens"]] == list(range(len(body["top_tokens"])))
            if kind == "embed":
                assert body["promoted"] == body["suppressed"] == []
                assert all(t["rank_change"] is None for t in body["top_tokens"])


@given(data=st.data())
@fuzz(60)
def test_fuzz_edge(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    span = ints(-s.n_pos, s.n_pos - 1)
    qs, m, exact = data.draw(query({"layer": ints(0, s.n_layers - 1), "source": span, "target": span}))
    layer, src, dst = m.get("layer"), m.get("source"), m.get("target")
    if None in (layer, src, dst):
        valid = None if {"layer", "source", "target"} <= set(m) else False
    else:
        valid = (in_range(layer, 0, s.n_layers - 1) and position(src, s) is not None and position(dst, s) is not None
                 and position(src, s) <= position(dst, s))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/edge", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert set(body) == {"weight", "heads"} and is_num(body["weight"])
        assert sorted(h["head"] for h in body["heads"]) == list(range(s.n_heads))
        weights = [h["weight"] for h in body["heads"]]
        assert all(is_num(w) for w in weights) and weights == sorted(weights, reverse=True)


@given(data=st.data())
@fuzz(40)
def test_fuzz_head(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"layer": ints(0, s.n_layers - 1), "head": ints(-1, s.n_heads - 1),
                                    "pos": ints(-s.n_pos, s.n_pos - 1)}))
    layer, head, pos = m.get("layer"), m.get("head"), m.get("pos", -1)
    if None in (layer, head, pos):
        valid = None if {"layer", "head"} <= set(m) else False
    else:
        valid = in_range(layer, 0, s.n_layers - 1) and in_range(head, -1, s.n_heads - 1) and position(pos, s) is not None
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/head", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert set(body) == {"pattern", "contributions", "promoted", "suppressed"}
        for grid in (body["pattern"], body["contributions"]):
            assert len(grid) == s.n_pos and all(len(row) == s.n_pos and all(is_num(v) for v in row) for row in grid)
        check_effects(body, s.vocab)


@given(data=st.data())
@fuzz(40)
def test_fuzz_ffn(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"layer": ints(0, s.n_layers - 1), "pos": ints(-s.n_pos, s.n_pos - 1),
                                    "k": ints(1, 200)}))
    layer, pos, k = m.get("layer"), m.get("pos"), m.get("k", 20)
    if None in (layer, pos, k):
        valid = None if {"layer", "pos"} <= set(m) else False
    else:
        valid = in_range(layer, 0, s.n_layers - 1) and position(pos, s) is not None and in_range(k, 1, 200)
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/ffn", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert set(body) == {"neurons", "all"}
        for n in body["neurons"]:
            assert set(n) == {"neuron", "index", "importance", "activation", "promoted", "suppressed"}
            assert 0 <= n["index"] < s.d_ffn and is_num(n["importance"]) and is_num(n["activation"])
            check_effects(n, s.vocab)
        check_effects(body["all"], s.vocab)
        if valid:
            assert len(body["neurons"]) == min(k, s.d_ffn)


@given(data=st.data())
@fuzz(40)
def test_fuzz_contrast(served, data):
    """Contrastive graphs and direct logit attribution with any token and foil: a 200 whose
    attributions sum to the logit difference, or a clear 4xx (foil = token, out of range, both forms)."""
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"pos": ints(-s.n_pos, s.n_pos - 1), "token_id": ints(0, s.vocab - 1),
                                    "foil_id": ints(0, s.vocab - 1), "foil": choice(["[3]", "ab", "x", ""])}))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/attribution", qs)
    body = check(r)  # a bad parameter may be refused (422) before an unknown trace (404)
    assert real or r.status_code in (404, 422)
    if r.status_code == 200:
        assert set(body) == {"pos", "token", "token_id", "foil", "foil_id", "embed", "constant", "layers", "total",
                             "logit_diff"}
        assert len(body["layers"]) == s.n_layers and body["token_id"] != body["foil_id"]
        assert abs(body["total"] - body["logit_diff"]) <= 1e-3 * max(1.0, abs(body["logit_diff"]))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/graph", qs.replace("pos=", "target="))
    body = check(r)
    assert real or r.status_code in (404, 422)
    if r.status_code == 200:
        check_graph_shape(body, s)


@given(data=st.data())
@fuzz(25)
def test_fuzz_verify(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"target": ints(-s.n_pos, s.n_pos - 1), "threshold": floats01(),
                                    "trials": ints(1, 3), "renormalise": choice(["true", "false"]),
                                    "curve": choice(["false"]), "seed": ints(0, 10)}))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/verify", qs)
    body = check(r)
    assert real or r.status_code in (404, 422)
    if r.status_code == 200:
        assert {"target", "full", "route", "random", "random_mean", "shares", "beats_random"} <= set(body)
        assert 0 <= body["route"]["prob"] <= 1 and 0 <= body["full"]["prob"] <= 1
        assert body["route"]["removed_weight"] <= body["total_weight"] + 1e-6


@given(data=st.data())
@fuzz(40)
def test_fuzz_neuron(served, data):
    s = served
    tid, real = data.draw(trace_ids(s))
    qs, m, exact = data.draw(query({"layer": ints(0, s.n_layers - 1), "pos": ints(-s.n_pos, s.n_pos - 1),
                                    "neuron": ints(0, s.d_ffn - 1), "k": ints(1, 100)}))
    layer, pos, neuron, k = m.get("layer"), m.get("pos"), m.get("neuron"), m.get("k", 10)
    if None in (layer, pos, neuron, k):
        valid = None if {"layer", "pos", "neuron"} <= set(m) else False
    else:
        valid = (in_range(layer, 0, s.n_layers - 1) and position(pos, s) is not None
                 and in_range(neuron, 0, s.d_ffn - 1) and in_range(k, 1, 100))
    r = get(s.client, f"/api/trace/{quote(tid, safe='')}/neuron", qs)
    body = check(r, expected(m, exact, real, valid))
    if r.status_code == 200:
        assert set(body) == {"promoted", "suppressed"}
        check_effects(body, s.vocab)
        if valid:
            assert len(body["promoted"]) == min(k, s.vocab)


@given(endpoint=st.sampled_from(DETAIL), tid=texts, raw=st.booleans())
@fuzz(40)
def test_fuzz_bogus_trace_ids(served, endpoint, tid, raw):
    """Any id that is not a trace (path-like, empty, unicode, huge) is a 404, with valid parameters too."""
    params = {"graph": "", "export": "format=svg", "node": "kind=block&layer=0&pos=0", "edge": "layer=0&source=0&target=1",
              "head": "layer=0&head=0", "ffn": "layer=0&pos=0", "neuron": "layer=0&pos=0&neuron=0",
              "attribution": "pos=-1", "verify": "trials=1"}[endpoint]
    segment = tid if raw else quote(tid, safe="")
    try:
        r = served.client.get(f"/api/trace/{segment}/{endpoint}?{params}")
    except Exception as err:  # the client refuses the URL (e.g. a raw space or control character): nothing sent
        assert raw, err
        return
    if tid != served.tid:
        check(r, 404)


# ---- dataset files ----------------------------------------------------------------------------------
FILE_ANSWERS = {  # odd dataset file names and the status each gets
    "prompts.txt": 200, "sub/inner.txt": 200, "./prompts.txt": 200, "sub//inner.txt": 200, "prompts.txt/": 200,
    "latin1.txt": 422, "big.txt": 422, "dir": 422, "sub": 422, "missing.txt": 422, "prompts.txt\x00.png": 422,
    "a" * 300: 422, "a/" * 200 + "x": 422, "%2e%2e/secret.txt": 422, " prompts.txt": 422, "PROMPTS.TXT": 422, "": 422,
    "escape.txt": 403, "sub/../prompts.txt": 403, "../secret.txt": 403, "/etc/passwd": 403, "C:/x.txt": 403,
    "\\\\host\\share": 403, "sub\\..\\..\\secret.txt": 403, "..": 403, "~/x": 422,
}
FILES = list(FILE_ANSWERS)


@pytest.mark.parametrize("name", FILES)
def test_dataset_file_names(served, name):
    """Every odd name in the list, one by one (the fuzzer below draws a few of them, plus any text)."""
    r = served.client.get("/api/prompts", params={"file": name})
    body = check(r, FILE_ANSWERS[name])
    assert "outside the dataset folder" not in r.text
    if r.status_code == 200:
        assert body["prompts"] and all(isinstance(p, str) and p for p in body["prompts"])


@given(q=query({"file": Param(st.sampled_from(FILES[:2]).map(lambda f: (f, f)), st.sampled_from(FILES).map(lambda f: (f, f)),
                             texts.map(lambda t: (t, t)))}))
@fuzz(50)
def test_fuzz_dataset_prompts(served, q):
    qs, m, exact = q
    r = get(served.client, "/api/prompts", qs)
    body = check(r)
    file = m.get("file")
    if not exact:
        return
    if file in DATASET:
        check(r, 200)
        assert body == {"file": file, "prompts": prompt_lines(DATASET[file])}  # the one reading (routelens/prompts.py)
    elif file in FILE_ANSWERS:
        check(r, FILE_ANSWERS[file])
    elif file is None:
        check(r, 422, "invalid_argument")
    if r.status_code == 200:
        assert set(body) == {"file", "prompts"} and all(isinstance(p, str) and p for p in body["prompts"])
        assert "outside the dataset folder" not in body["prompts"]


# ---- config, debug, health, unknown paths and methods -----------------------------------------------
@given(
    path=st.sampled_from(["/api/config", "/api/debug", "/api/health", "/api/models/status", "/api/prompts"]),
    qs=texts,
    headers=st.dictionaries(st.sampled_from(["accept", "x-forwarded-for", "origin", "cookie", "range", "accept-encoding"]),
                            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40), max_size=3),
)
@fuzz(30)
def test_fuzz_config_debug_health(served, path, qs, headers):
    r = served.client.get(f"{path}?{quote(qs, safe='=&')}", headers=headers)
    body = check(r)
    if "origin" in headers and headers["origin"].strip().lower() not in ("http://127.0.0.1", "https://127.0.0.1"):
        check(r, 403, "forbidden_origin")  # only the server's own pages may call its API
        return
    if path == "/api/config":
        check(r, 200)
        assert {"demo_mode", "debug", "default_model", "models", "allow_custom_models", "allow_loading_dataset_files",
                "max_user_string_length", "prompts", "default_threshold"} <= set(body)
        assert body["models"] == ["tiny"] and body["max_user_string_length"] == MAX_CHARS
    elif path == "/api/debug":
        check(r, 403, "forbidden")  # debug is off on this server
    elif path == "/api/health":
        check(r, 200)
        assert body["ok"] is True


PATHS = ["/api/config", "/api/debug", "/api/health", "/api/models/load", "/api/models/status", "/api/trace",
         "/api/prompts", "/api/login", "/api", "/api/", "/api/trace/x", "/api/trace/x/graph/", "/api/docs",
         "/api/openapi.json", "/", "/index.html", "/assets/../../etc/passwd", "/assets/x.js", "/api//config",
         "/API/config", "/api/config/", "/api/models", "/api/trace//graph", "/.env", "/api/%00"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "FOO"]


@given(
    method=st.sampled_from(METHODS),
    path=st.one_of(st.sampled_from(PATHS), texts.map(lambda t: "/api/" + quote(t, safe="/")),
                   texts.map(lambda t: "/" + quote(t, safe=""))),
    body=st.one_of(st.just(b""), st.binary(max_size=50), st.just(b'{"model": "tiny", "prompt": "the"}')),
)
@fuzz(60)
def test_fuzz_paths_and_methods(served, method, path, body):
    try:
        r = served.client.request(method, path, content=body or None,
                                  headers={"content-type": "application/json"} if body else {})
    except Exception:  # a URL the client will not send: nothing reached the server (whose errors come back as 500s)
        return
    check(r)
    known_get = {"/api/config", "/api/health", "/api/openapi.json", "/api/docs", "/"}
    if method in ("PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "FOO") and path.startswith("/api/"):
        check(r, "reject")
    if method == "GET" and path in known_get:
        check(r, 200)


printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


# ---- who may talk to the server: Host, Origin, fetch metadata, content type (issue 9) -----------------
OWN_HOSTS = ["127.0.0.1", "127.0.0.1:8000", "localhost", "localhost:8000", "[::1]:8000", "app.localhost", "10.0.0.7"]
FOREIGN_HOSTS = ["attacker.example", "127.0.0.1.nip.io", "localhost.attacker.example", "evil.localhost.example:8000",
                 "", "  ", "xn--80ak6aa92e.com", "127.0.0.1@evil.example", "local host"]
hosts = st.one_of(st.sampled_from(OWN_HOSTS + FOREIGN_HOSTS),
                  st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30))


def host_is_own(host: str) -> bool:
    from routelens.server.origins import HostPolicy

    return HostPolicy().host_allowed(host)


@given(
    method=st.sampled_from(["GET", "POST"]),
    path=st.sampled_from(["/api/config", "/api/trace", "/api/models/load", "/api/prompts?file=prompts.txt", "/"]),
    host=hosts,
    origin=st.one_of(st.none(), st.sampled_from(["http://127.0.0.1", "null", "http://evil.example", "http://127.0.0.1:3000",
                                                 "file://", "http://localhost"]), printable),
    site=st.one_of(st.none(), st.sampled_from(["same-origin", "same-site", "cross-site", "none"]), printable),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
@fuzz(80)
def test_fuzz_hosts_origins_and_content_types(served, method, path, host, origin, site, content_type):
    """Whatever a page, a rebinding name or a forged request sends, only this server's own pages
    get in: a foreign Host is refused everywhere, a foreign Origin or site on the API, a POST that
    is not JSON always; every refusal is a JSON 4xx that says what to do."""
    headers = {"host": host}
    if origin is not None:
        headers["origin"] = origin
    if site is not None:
        headers["sec-fetch-site"] = site
    body = json.dumps({"model": "tiny", "prompt": PROMPT}).encode() if method == "POST" else None
    if body is not None and content_type:
        headers["content-type"] = content_type
    try:
        r = served.client.request(method, path, content=body, headers=headers)
    except Exception:  # a header value the client will not send: nothing reached the server
        return
    check(r)
    api = path.startswith("/api")
    own_origin = origin is None or origin.strip().lower() in (f"http://{host.strip().lower()}", f"https://{host.strip().lower()}")
    if not host_is_own(host):
        check(r, 403, "forbidden_host")
    elif (api or method == "POST") and not own_origin:
        check(r, 403, "forbidden_origin")
    elif (api or method == "POST") and origin is None and site in ("cross-site", "same-site"):
        check(r, 403, "forbidden_origin")
    elif method == "POST" and content_type != "application/json":
        check(r, 415, "unsupported_media_type")
    assert r.headers.get("x-frame-options") == "DENY" and r.headers.get("x-content-type-options") == "nosniff"


# ---- the server with a token (demo mode, debug on) ---------------------------------------------------
@given(
    body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=100),
                   st.sampled_from([b"[" * 5000, b'{"token": ' * 2000, b"{}", b'{"token": null}', b'{"token": 1}',
                                    b'{"token": ["' + TOKEN.encode() + b'"]}', b'{"token": "' + TOKEN.encode() + b' "}',
                                    b'{"token": "' + TOKEN.encode()[:-1] + b'"}', b"a" * 9000]),
                   st.text(max_size=30).map(lambda t: json.dumps({"token": t}).encode())),
)
@fuzz(40)
def test_fuzz_login(secured, body):
    r = secured.client.post("/api/login", content=body, headers={"content-type": "application/json"})
    if len(body) > MAX_BODY:  # a login's body is bounded like every other body
        check(r, 413, "body_too_large")
    else:
        check(r, 401, "unauthorized")
    assert "set-cookie" not in r.headers


def test_login_with_the_token_sets_the_cookie(secured):
    r = secured.client.post("/api/login", json={"token": TOKEN})
    check(r, 200)
    assert r.json() == {"ok": True} and "set-cookie" in r.headers
    secured.client.cookies.clear()


@given(
    path=st.sampled_from(["/api/config", "/api/debug", "/api/models/status?model=tiny", "/api/prompts?file=prompts.txt",
                          "GRAPH", "/api/health", "/api/nowhere"]),
    auth=st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), st.just(f"bearer   {TOKEN}  "), st.just(TOKEN),
                   st.just(f"Basic {TOKEN}"), st.just(f"Bearer {TOKEN}x"), printable.map(lambda t: "Bearer " + t),
                   printable),
    cookie=st.one_of(st.none(), st.just(f"routelens_token={TOKEN}"), printable.map(lambda t: "routelens_token=" + t),
                     printable),
    threshold=floats01().mixed(),
)
@fuzz(60)
def test_fuzz_secured(secured, path, auth, cookie, threshold):
    """Tokens in headers and cookies, right or wrong; demo mode's threshold floor; debug figures."""
    s = secured
    headers = {k: v for k, v in (("authorization", auth), ("cookie", cookie)) if v is not None}
    if path == "GRAPH":
        path = f"/api/trace/{s.tid}/graph?threshold={quote(threshold[0], safe='')}"
    r = s.client.get(path, headers=headers)
    s.client.cookies.clear()
    body = check(r)
    given_token = None
    if auth is not None and auth.lower().startswith("bearer "):
        given_token = auth[7:].strip()
    # a cookie holds a session id from a login, never the token: a cookie with the token opens nothing
    if path == "/api/health":
        check(r, 200)
        return
    if given_token != TOKEN:
        check(r, 401, "unauthorized")
        return
    if path == "/api/debug":
        check(r, 200)
        assert {"resident_mb", "traces_cached", "max_traces", "models", "torch_threads", "kernel_compiled"} <= set(body)
        assert body["models"] == {"tiny": "ready"}
    elif path == "/api/prompts?file=prompts.txt":
        check(r, 403, "forbidden")  # demo mode loads no dataset files
    elif path.startswith("/api/trace/"):
        t = threshold[1]
        if isinstance(t, float) and 0.01 <= t <= 1:
            check(r, 200)
        elif isinstance(t, float) and 0 <= t < 0.01:
            check(r, 403, "forbidden")  # demo mode draws no routes below its threshold floor
        elif isinstance(t, float):
            check(r, 422, "invalid_argument")
    elif path == "/api/nowhere":
        check(r, 404)
    else:
        check(r, 200)


# ---- regressions: what the fuzzers found (each was a 500, or an error that said nothing to do) --------
def test_k_above_the_vocabulary_size_gives_the_whole_vocabulary(served):
    """k may be up to 100 (node, neuron) but the tiny vocabulary has 10 tokens: topk(k) raised -> 500."""
    s, c = served, served.client
    node = check(c.get(f"/api/trace/{s.tid}/node", params={"kind": "block", "layer": 0, "pos": 0, "k": 100}), 200)
    assert len(node["top_tokens"]) == len(node["promoted"]) == len(node["suppressed"]) == s.vocab
    assert sorted(t["id"] for t in node["top_tokens"]) == list(range(s.vocab))
    neuron = check(c.get(f"/api/trace/{s.tid}/neuron", params={"layer": 1, "pos": -1, "neuron": 3, "k": 11}), 200)
    assert len(neuron["promoted"]) == len(neuron["suppressed"]) == s.vocab
    attn = check(c.get(f"/api/trace/{s.tid}/node", params={"kind": "attn", "layer": 1, "pos": 2, "k": 10}), 200)
    assert len(attn["top_tokens"]) == 10  # k at or below the vocabulary size: as before


def test_a_dataset_file_name_too_long_for_the_file_system_is_refused(served):
    """A name of 256+ characters made the file system raise ENAMETOOLONG -> 500."""
    for name in ("a" * 300, "sub/" + "b" * 256, "é" * 200):
        r = served.client.get("/api/prompts", params={"file": name})
        check(r, 422, "invalid_argument")
        assert "name a file inside the dataset folder" in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [b'{"prompt": "the \\ud800 capital"}', b'{"model": "\\udfff", "prompt": "the"}',
                                  b'{"model": "tiny", "prompt": "\\ud83d"}'])
def test_a_lone_surrogate_in_a_prompt_or_model_is_refused(served, body):
    """JSON can send a lone surrogate ("\\ud800"): it cannot be encoded, so hashing the trace key -> 500."""
    r = served.client.post("/api/trace", content=body, headers={"content-type": "application/json"})
    check(r, 422, "invalid_argument")
    assert "lone surrogate" in r.json()["error"]["message"]
    r = served.client.post("/api/models/load", content=b'{"model": "tiny\\ud800"}',
                           headers={"content-type": "application/json"})
    check(r, 422, "invalid_argument")


def test_json_nested_too_deep_is_a_bad_request(served, secured):
    """Deeply nested JSON: FastAPI's 400 had the undocumented code "http_error"; /api/login raised
    RecursionError out of the access middleware -> a plain-text 500."""
    for data in (b"[" * 3000, b'[{"a":' * 600):  # (under the 4096-byte limit on bodies)
        r = served.client.post("/api/trace", content=data, headers={"content-type": "application/json"})
        check(r, 400, "bad_request")
    for data in (b"[" * 4000, b'{"token": ' * 400):  # (under the limit on bodies, which logins obey too)
        check(secured.client.post("/api/login", content=data, headers={"content-type": "application/json"}), 401,
              "unauthorized")


def test_refusals_that_said_nothing_to_do_now_do(served, secured):
    r = served.client.get(f"/api/trace/{served.tid}/edge", params={"layer": 0, "source": 3, "target": 1})
    check(r, 422, "invalid_argument")
    assert "use a source at or before the target" in r.json()["error"]["message"]
    r = secured.client.get("/api/prompts", params={"file": "prompts.txt"}, headers={"authorization": f"Bearer {TOKEN}"})
    check(r, 403, "forbidden")
    assert "type the prompts instead" in r.json()["error"]["message"]
    r = served.client.get("/api/prompts", params={"file": "missing.txt"})
    check(r, 422, "invalid_argument")
    assert "check the name" in r.json()["error"]["message"]


# ---- after all that ---------------------------------------------------------------------------------
def test_the_server_serves_on_after_fuzzing(served):
    """Nothing the fuzzers sent changed what the server answers for the traced prompt."""
    c = served.client
    assert check(c.get("/api/health"), 200)["ok"] is True
    assert check(c.get(f"/api/trace/{served.tid}/graph", params={"threshold": 0.01}), 200) == served.graph
    again = check(c.post("/api/trace", json={"model": "tiny", "prompt": PROMPT}), 200)
    assert again["trace_id"] == served.tid and again["timings"]["cached"] is True
    assert c.app.state.queue.status()["running"].get("cpu", 0) == 0


def test_the_fuzzers_reached_both_sides():
    """A fuzzer whose cases are all refused tests nothing of the valid path (and the other way round):
    each one that ran here saw both 200s and 4xx."""
    both = ["test_fuzz_models_load", "test_fuzz_models_status", "test_fuzz_trace", "test_fuzz_graph", "test_fuzz_export",
            "test_fuzz_node", "test_fuzz_edge", "test_fuzz_head", "test_fuzz_ffn", "test_fuzz_neuron",
            "test_fuzz_dataset_prompts", "test_fuzz_config_debug_health", "test_fuzz_paths_and_methods", "test_fuzz_secured"]
    ran = [name for name in both if SEEN[name]]
    if not ran:
        pytest.skip("no fuzz test ran in this session")
    for name in ran:
        ok = SEEN[name][200]
        refused = sum(n for status, n in SEEN[name].items() if 400 <= status < 500)
        assert ok >= 2 and refused >= 2, f"{name}: {dict(SEEN[name])}"
    if len(ran) == len(both):  # the whole module ran
        assert sum(sum(c.values()) for c in SEEN.values()) >= 500
