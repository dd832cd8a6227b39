"""A character-level tokenizer for the testbed, built locally with the ``tokenizers`` library.

Issue 3 ("Testbed"): no download; a real ``transformers.PreTrainedTokenizerFast`` with a chat
template, saved and loaded with ``save_pretrained`` / ``from_pretrained`` like any model's.

Vocabulary: the special tokens (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``, ``<|system|>``,
``<|user|>``, ``<|assistant|>``), then every printable ASCII character (space to ``~``), one token
per character. ``<eos>`` ends every chat turn, so generation stops at the end of the answer.

Chat template (the rendered text of one user turn plus the generation prompt)::

    <bos><|user|>make 26 from 3 5 7<eos><|assistant|>

and the assistant's response is ``7*3=21,21+5=26<eos>``.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer", "load_tokenizer"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, *ROLE_TOKENS)
# every printable ASCII character except the whitespace controls (\t\n\r\x0b\x0c)
CHARS = tuple(c for c in string.printable if c == " " or not c.isspace())

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (deterministic ids: specials 0..6, then characters)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in CHARS:
        vocab[c] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # one piece per character, spaces included
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer through ``AutoTokenizer`` (the real-model code path)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
