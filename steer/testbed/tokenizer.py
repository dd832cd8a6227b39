"""A character-level tokenizer for the testbed, built locally (a ``tokenizers`` BPE without merges).

No download; a real ``transformers.PreTrainedTokenizerFast`` with a chat
template, saved and loaded with ``save_pretrained`` / ``from_pretrained`` like any model's.

Vocabulary: the special tokens (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``, ``<|system|>``,
``<|user|>``, ``<|assistant|>``), then the 256 bytes of the byte-level alphabet, one token per byte
(so one token per ASCII character, and any text is encodable). ``<eos>`` ends every chat turn, so generation stops at the end of the answer.

Chat template (the rendered text of one user turn plus the generation prompt)::

    <bos><|user|>make 26 from 3 5 7<eos><|assistant|>

and the assistant's response is ``7*3=21,21+5=26<eos>``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer", "load_tokenizer"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, *ROLE_TOKENS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def _byte_chars() -> list[str]:
    """The 256 characters of the byte-level alphabet (GPT-2 / Qwen2 convention), in byte order:
    printable bytes map to themselves, the others (space included: ``Ġ``) to code points >= 256."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (deterministic ids: specials 0..6, then the 256 bytes).

    It is a byte-level BPE **without merges** (so every byte is one token) of the class
    ``Qwen2Tokenizer``: ``AutoTokenizer.from_pretrained`` on a directory whose ``config.json`` says
    ``qwen2`` rebuilds exactly this class (transformers 5 picks the tokenizer class from the model
    type), so saving and loading give identical ids."""
    from transformers import Qwen2Tokenizer

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in _byte_chars():
        vocab[c] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        clean_up_tokenization_spaces=False,
        model_max_length=512,
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer through ``AutoTokenizer`` (the real-model code path)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
