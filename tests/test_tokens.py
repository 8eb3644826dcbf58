"""Token labels faithful to the bytes (routelens/models/tokens.py): pieces of a character are shown
as their bytes, "<E6 97>", never as U+FFFD, and distinct byte sequences never share a label.

The first tests need no model; the rest (marked slow) run the embedded smollm2 and Gemma on prompts
whose characters their tokenizers split into pieces: through the library, the API and the SVG."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from routelens.models.tokens import (
    BYTE_GROUP, TokenBytes, byte_label, bytes_to_unicode, label_bytes, rebuild_text, sequence_labels, token_label,
)

PIZZA = "🍕".encode()  # F0 9F 8D 95
NIHON = "日本".encode()  # E6 97 A5, E6 9C AC


def assert_faithful(labels: list[str], pieces: list[bytes], text: str) -> None:
    """No U+FFFD unless the text has one, one label per byte sequence, and the labels rebuild the text."""
    assert len(labels) == len(pieces)
    if "\ufffd" not in text:
        assert not any("\ufffd" in label for label in labels), labels
    seen: dict[str, bytes] = {}
    for label, piece in zip(labels, pieces):
        assert seen.setdefault(label, piece) == piece, f"{label!r} labels both {seen[label]!r} and {piece!r}"
    assert rebuild_text(labels) == text


# ---- the labelling functions, on hand-made bytes (no model) ----------------------------------------
def test_byte_label_is_upper_case_hex_in_angle_brackets():
    assert byte_label(b"\xe6\x97") == "<E6 97>"
    assert byte_label(b"\x0a") == "<0A>"
    assert BYTE_GROUP.fullmatch("<E6 97>") and not BYTE_GROUP.fullmatch("<bos>")
    assert not BYTE_GROUP.search("<17> <0A>")  # ASCII bytes always decode: never a byte group
    assert token_label(b"<17>") == "<17>" and token_label(b"\x17") == "\x17"


@pytest.mark.parametrize(("pieces", "labels"), [
    ([PIZZA[:2], PIZZA[2:3], PIZZA[3:]], ["<F0 9F>", "<8D>", "🍕"]),            # smollm2's 🍕
    ([PIZZA[:1], PIZZA[1:2], PIZZA[2:3], PIZZA[3:]], ["<F0>", "<9F>", "<8D>", "🍕"]),  # byte fallback
    ([NIHON[:2], NIHON[2:3], NIHON[3:]], ["<E6 97>", "日", "本"]),
    ([b" " + NIHON[:1], NIHON[1:2], NIHON[2:3]], [" <E6>", "<97>", "日"]),       # text, then a piece
    ([NIHON[:1], NIHON[1:4], NIHON[4:]], ["<E6>", "日<E6>", "本"]),              # a piece after text
    ([NIHON[:1], NIHON[1:4], NIHON[4:5]], ["<E6>", "日<E6>", "<9C>"]),           # ends mid-character
    ([b"The", b" capital"], ["The", " capital"]),
    ([PIZZA], ["🍕"]),
    ([b""], [""]),
])
def test_sequence_labels(pieces, labels):
    assert sequence_labels(pieces) == labels
    text = b"".join(pieces).decode("utf-8", "replace")
    assert rebuild_text(labels) == text.replace("\ufffd", "")


def test_a_character_completed_later_is_shown_by_the_token_that_completes_it():
    pieces = [b"a\xe6", b"\x97", b"\xa5b", b"\xe6\x9c\xac"]
    labels = sequence_labels(pieces)
    assert labels == ["a<E6>", "<97>", "日b", "本"]
    assert_faithful(labels, pieces, "a日b本")


def test_invalid_bytes_are_shown_once_as_bytes():
    # 0x80 cannot start a character; E6 followed by "A" is never finished
    assert sequence_labels([b"\x80x"]) == ["<80>x"]
    assert sequence_labels([b"\xe6", b"A"]) == ["<E6>", "A"]  # E6 was shown by the token it came in
    assert sequence_labels([b"\xff\xfe"]) == ["<FF FE>"]
    assert token_label(b"\x83\xbd") == "<83 BD>"


def test_isolated_labels_are_one_to_one():
    pieces = [PIZZA, PIZZA[:2], PIZZA[2:3], PIZZA[3:], b"\x95\xf0", NIHON, NIHON[:2], NIHON[2:], b" \xe6", b" ",
              b"\xe6", b"<E6>", b"<E6> \xe6", b"A<E6>", b"\xe6 <E6>", b"", b"\x00", b"\n", b"<3C 45 36 3E>",
              b"<17>", b"\x17", b"<41 3C 45 36 3E>", b"<3C>", b"<"]
    labels = [token_label(p) for p in pieces]
    assert len(set(labels)) == len(pieces), labels
    for piece, label in zip(pieces, labels):
        assert label_bytes(label) == piece
        assert "\ufffd" not in label
    assert token_label(PIZZA[3:]) == "<95>" and token_label(PIZZA) == "🍕" and token_label(b" \xe6") == " <E6>"
    assert token_label(b"<E6>") == "<3C 45 36 3E>"  # text shaped like a byte group: shown as its bytes


def test_every_byte_on_its_own_has_its_own_label():
    labels = [token_label(bytes([b])) for b in range(256)]
    assert len(set(labels)) == 256
    assert labels[0x41] == "A" and labels[0x80] == "<80>" and labels[0xE6] == "<E6>"


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[0x20] == "Ġ" and table[ord("A")] == "A" and table[0x0A] == "Ċ"


class ByteLevelLike:
    """A tokenizer that only decodes and converts ids to vocabulary strings, like GPT-2's slow one."""

    byte_decoder = True  # the attribute GPT-2's slow tokenizer has
    pieces = {0: "ðŁ", 1: "į", 2: "ķ", 3: "ĠParis", 4: "<|end|>"}
    all_special_ids = [4]

    def convert_ids_to_tokens(self, i):
        return self.pieces[i]

    def decode(self, ids, **_kwargs):
        return "<|end|>" if ids == [4] else "\ufffd"


def test_token_bytes_of_a_byte_level_vocabulary():
    reader = TokenBytes(ByteLevelLike())
    assert reader.scheme == "bytelevel"
    assert reader([0, 1, 2, 3, 4]) == [b"\xf0\x9f", b"\x8d", b"\x95", b" Paris", b"<|end|>"]
    assert sequence_labels(reader([0, 1, 2])) == ["<F0 9F>", "<8D>", "🍕"]


def test_token_bytes_of_a_tokenizer_that_only_decodes():
    class Words:
        def decode(self, ids, **_kwargs):
            return "".join(f"<{i}>" for i in ids)

    reader = TokenBytes(Words())
    assert reader.scheme == "text" and reader([3, 17]) == [b"<3>", b"<17>"]


# ---- the embedded models (slow) ---------------------------------------------------------------------
SMOLLM2_LABELS = {
    "🍕": ["<F0 9F>", "<8D>", "🍕"],
    "日本の首都は": ["<E6 97>", "日", "本", "の", "<E9>", "<A6>", "首", "<E9>", "都", "<E3 81>", "は"],
    "中国的首都是北京": ["中", "<E5 9B>", "国", "的", "<E9>", "<A6>", "首", "<E9>", "都", "是", "<E5 8C>", "北",
                      "<E4 BA>", "京"],
}
GEMMA_PROMPT = "𓀀"  # an Egyptian hieroglyph: four byte-fallback tokens <0xF0> <0x93> <0x80> <0x80>
GEMMA_LABELS = ["<bos>", "<F0>", "<93>", "<80>", "𓀀"]


def check_trace(model, trace, text: str) -> None:
    pieces = [bytes.fromhex(h) for h in trace.token_bytes]
    assert pieces == model.token_bytes(trace.token_ids)
    assert_faithful(trace.tokens, pieces, model.tokenizer.decode(trace.token_ids))
    assert text in rebuild_text(trace.tokens)
    for row in trace.predictions(k=5):  # every prediction on its own: one-to-one labels, bytes beside
        for p in row:
            assert p["token"] == token_label(bytes.fromhex(p["bytes"])) and "\ufffd" not in p["token"]
            assert label_bytes(p["token"]) == bytes.fromhex(p["bytes"])


@pytest.mark.slow
@pytest.mark.parametrize("prompt", list(SMOLLM2_LABELS))
def test_smollm2_labels_pieces_of_characters(smollm2, prompt):
    trace = smollm2.trace(prompt, store=False)
    assert trace.tokens == SMOLLM2_LABELS[prompt]
    check_trace(smollm2, trace, prompt)
    top = trace.top_tokens("block", trace.n_layers - 1, -1, k=20)
    effects = trace.block_write_tokens(trace.n_layers - 1, -1, "ffn", k=20)
    for t in top + effects["promoted"] + effects["suppressed"]:
        assert t["token"] == token_label(bytes.fromhex(t["bytes"])) and "\ufffd" not in t["token"]
    labels = {t["token"]: t["id"] for t in top}
    assert len(labels) == len(top)  # distinct ids, distinct labels (smollm2 has no two ids with the same bytes)


@pytest.mark.slow
def test_gemma_labels_byte_fallback_tokens(gemma3):
    trace = gemma3.trace(GEMMA_PROMPT, store=False)
    assert gemma3.tokenizer.convert_ids_to_tokens(trace.token_ids)[1:] == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert trace.tokens == GEMMA_LABELS
    check_trace(gemma3, trace, GEMMA_PROMPT)


@pytest.mark.slow
def test_svg_and_graph_json_carry_the_labels_and_bytes(smollm2, tmp_path):
    from routelens.export.labels import token_text
    from routelens.routes.graph import RouteGraph

    prompt = "🍕 日本の首都は"
    trace = smollm2.trace(prompt, store=False)
    graph = trace.graph(target=-1, threshold=0.0)
    data = graph.to_dict()
    assert data["tokens"] == trace.tokens and data["token_bytes"] == trace.token_bytes
    assert RouteGraph.from_dict(data).token_bytes == trace.token_bytes
    assert "\ufffd" not in (data["target"]["token"] or "")
    path = graph.save(tmp_path / "route.svg")
    texts = [el.text for el in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")]
    tips = [el.text or "" for el in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}title")]
    shown = {token_text(label) for label in trace.tokens}  # the axis marks a space as ␣, "<F0 9F>" as it is
    assert "<F0 9F>" in shown and "\u2423<E6>" in shown
    assert shown <= set(texts), shown - set(texts)
    assert not any("\ufffd" in (t or "") for t in texts)
    assert any("bytes F0 9F" in t for t in tips)
    graphml = graph.save(tmp_path / "route.graphml").read_text(encoding="utf-8")
    assert "&lt;F0 9F&gt;" in graphml and "\ufffd" not in graphml


@pytest.mark.slow
def test_api_tokens_and_predictions_are_faithful(smollm2):
    from fastapi.testclient import TestClient

    from routelens.server.app import create_app
    from routelens.server.config import load_config
    from servers import LOCAL

    with TestClient(create_app(load_config(None), preload=False), base_url=LOCAL) as client:
        deadline = time.monotonic() + 600
        while client.get("/api/models/status", params={"model": "smollm2-135m-instruct"}).json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for prompt, labels in SMOLLM2_LABELS.items():
            r = client.post("/api/trace", json={"model": "smollm2-135m-instruct", "prompt": prompt})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["tokens"] == labels
            pieces = [bytes.fromhex(h) for h in body["token_bytes"]]
            assert_faithful(body["tokens"], pieces, prompt)
            for row in body["predictions"]:
                for p in row:
                    assert "\ufffd" not in p["token"] and label_bytes(p["token"]) == bytes.fromhex(p["bytes"])
        graph = client.get(f"/api/trace/{body['trace_id']}/graph", params={"threshold": 0.0}).json()
        assert graph["tokens"] == labels and graph["token_bytes"] == body["token_bytes"]
        svg = client.get(f"/api/trace/{body['trace_id']}/export", params={"format": "svg", "threshold": 0.0}).text
        assert "&lt;E5 9B&gt;" in svg and "\ufffd" not in svg
        node = client.get(f"/api/trace/{body['trace_id']}/node",
                          params={"kind": "block", "layer": 29, "pos": len(labels) - 1}).json()
        for t in node["top_tokens"] + node.get("promoted", []) + node.get("suppressed", []):
            assert "\ufffd" not in t["token"] and label_bytes(t["token"]) == bytes.fromhex(t["bytes"])
