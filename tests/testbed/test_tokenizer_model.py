"""Tokenizer, chat template and tiny model save/load (issue 3, "Testbed")."""

from __future__ import annotations

import pytest
import torch

from steer.testbed import (
    PRESETS,
    build_model,
    build_tokenizer,
    count_parameters,
    load_policy,
    save_policy,
)
from steer.testbed.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_round_trip_every_character(tok):
    texts = ["7*3=21,21+5=26", "make 26 from 3 5 7 12", "Calculate 97 + 33.", " a  b ", "~!@#$%^&()[]{}<>?"]
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(t)  # one token per character
        assert tok.decode(ids) == t


def test_any_text_is_encodable_bytewise(tok):
    ids = tok("é\t", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 and tok.unk_token_id not in ids  # two bytes for é, one for the tab
    assert tok.decode(ids) == "é\t"


def test_special_tokens_distinct(tok):
    ids = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    assert len(ids) == 4 and None not in ids


def test_chat_template(tok):
    msgs = [{"role": "user", "content": "make 26 from 3 5 7"}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<bos><|user|>make 26 from 3 5 7<eos><|assistant|>"
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[:2] == ["<bos>", "<|user|>"] and toks[-2:] == ["<eos>", "<|assistant|>"]
    assert len(ids) == 2 + len("make 26 from 3 5 7") + 2
    no_gen = tok.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
    assert no_gen == "<bos><|user|>make 26 from 3 5 7<eos>"


def test_save_load_same_ids(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    tok2 = load_tokenizer(tmp_path)
    msgs = [{"role": "user", "content": "make 10 from 2 8"}]
    a = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    b = tok2.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert a == b
    assert tok(a, add_special_tokens=False)["input_ids"] == tok2(b, add_special_tokens=False)["input_ids"]
    assert tok2.pad_token_id == tok.pad_token_id and tok2.eos_token_id == tok.eos_token_id
    assert tok2.padding_side == "left"


def test_autotokenizer_next_to_a_qwen2_config_keeps_ids(tok, tmp_path):
    # transformers 5 picks the tokenizer class from config.json's model type: the ids must survive
    from transformers import AutoTokenizer

    save_policy(build_model(tok, "micro"), tok, tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    text = "<bos><|user|>make 15 from 3 9 12<eos><|assistant|>9+3=12, 12+3=15<eos>"
    assert (
        tok(text, add_special_tokens=False)["input_ids"] == tok2(text, add_special_tokens=False)["input_ids"]
    )
    assert (
        tok2.decode(tok2("make 15 from 3 9 12", add_special_tokens=False)["input_ids"])
        == "make 15 from 3 9 12"
    )


def test_presets_sizes(tok):
    sizes = {p: count_parameters(build_model(tok, p)) for p in PRESETS}
    assert 50_000 < sizes["micro"] < sizes["tiny"] < sizes["small"] < 5_000_000
    assert 300_000 < sizes["tiny"] < 2_000_000


def test_build_model_rejects_bad_input(tok):
    with pytest.raises(ValueError, match="preset"):
        build_model(tok, "huge")
    with pytest.raises(ValueError, match="not_a_field"):
        build_model(tok, "micro", not_a_field=3)


def test_model_seeded_and_save_load_identical_logits(tok, tmp_path):
    m1 = build_model(tok, "micro", seed=3)
    m2 = build_model(tok, "micro", seed=3)
    m3 = build_model(tok, "micro", seed=4)
    x = torch.randint(0, len(tok), (3, 12))
    with torch.no_grad():
        l1 = m1(x).logits
        assert torch.equal(l1, m2(x).logits)
        assert not torch.equal(l1, m3(x).logits)
    assert m1.config.tie_word_embeddings
    save_policy(m1, tok, tmp_path / "p")
    m4, tok4 = load_policy(tmp_path / "p")
    assert type(m4).__name__ == "Qwen2ForCausalLM"
    with torch.no_grad():
        assert torch.equal(l1, m4(x).logits)
    assert tok4.decode(tok4("1+2=3", add_special_tokens=False)["input_ids"]) == "1+2=3"
    assert m4.generation_config.eos_token_id == tok.eos_token_id


def test_generate_stops_at_eos(tok):
    m = build_model(tok, "micro", seed=0)
    enc = tok(
        ["<bos><|user|>make 5 from 2 3<eos><|assistant|>"], return_tensors="pt", add_special_tokens=False
    )
    torch.manual_seed(0)
    out = m.generate(**enc, do_sample=True, max_new_tokens=8, pad_token_id=tok.pad_token_id)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 8
