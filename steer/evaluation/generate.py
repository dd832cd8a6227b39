"""The one generation path: sampling with HF ``generate`` for training rollouts, held-out
evaluation (trainer and testbed) and ``steer eval``, plus the optional vLLM backend.

:func:`sample` is the single place where prompts are encoded, ``model.generate`` is called and a
response's end is decided:

- prompts are left-padded (the tokenizer's own padding, on its left side), and a prompt longer
  than ``max_prompt_tokens`` keeps its end;
- a response ends at the first **stop token**: the tokenizer's ``eos_token_id`` together with
  every id of the model's ``generation_config.eos_token_id`` (Qwen lists ``<|im_end|>`` and
  ``<|endoftext|>``; :func:`stop_token_ids`). The stop token is part of the response (its mask
  is True, it counts in ``n_tokens``); what follows it is padding. A response that never stops
  ran to ``max_new_tokens`` (``finish="length"``);
- the text is the decoded valid tokens without the stop token and without special tokens;
- sampling uses only the arguments given: a fresh ``GenerationConfig``, and the model's own
  ``generation_config`` is set aside during the call, because transformers would otherwise fill
  every setting left unset from it (a checkpoint's repetition penalty, say). A rollout is thus
  drawn from exactly the distribution the trainer scores; ``temperature=0`` is greedy.

Backends turn prompt strings (chat template already applied) into completions:
``generate(prompts, *, temperature, top_p, max_tokens, seed) -> list[Completion]`` (one per
prompt; repeat a prompt to sample it several times). :class:`HFBackend` is :func:`sample` with
``n=1``; :class:`VLLMBackend` needs the optional ``vllm`` package (GPU). Sampling follows the
paper's evaluation setting (temperature 1.0, top-p 0.7, no top-k; section 5.1 / spec
evaluation.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Completion",
    "Generation",
    "HFBackend",
    "VLLMBackend",
    "encode_prompts",
    "response_mask_from_ids",
    "sample",
    "stop_token_ids",
]


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish: str  # "stop" (a stop token) or "length" (hit max_tokens)


@dataclass
class Generation:
    """What :func:`sample` returns; row ``i*n + j`` is sample ``j`` of prompt ``i`` (group ``i``).

    Layout (verl's convention): prompts left-padded to ``(B, P)``, responses right-padded to
    ``(B, T)``, ``response_mask`` True up to and including the first stop token (on every
    generated token of a response that hit ``max_new_tokens``)."""

    prompt_ids: Tensor  # (B, P) long, left-padded
    prompt_mask: Tensor  # (B, P) bool
    response_ids: Tensor  # (B, T) long, right-padded
    response_mask: Tensor  # (B, T) bool
    group_ids: Tensor  # (B,) long
    texts: list[str]  # decoded responses, B entries
    finish: list[str]  # "stop" or "length", B entries
    entropy_sum: list[float] | None = None  # per response: sum of H over its valid tokens

    @property
    def batch_size(self) -> int:
        return int(self.response_ids.shape[0])

    @property
    def n_tokens(self) -> list[int]:
        return [int(x) for x in self.response_mask.sum(1).tolist()]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the model's generation EOS."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(int(x) for x in extra)
    if not ids:
        raise ValueError(
            "neither the tokenizer (eos_token_id) nor the model's generation_config defines an "
            "end-of-sequence token: responses could never end"
        )
    return sorted(ids)


def _pad_id(tokenizer, stops: list[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(stops[0])


def encode_prompts(
    tokenizer, prompts: list[str], max_prompt_tokens: int | None = None
) -> tuple[Tensor, Tensor]:
    """Left-padded ``(ids, mask)`` of fully formatted prompts (no special tokens added); a prompt
    longer than ``max_prompt_tokens`` keeps its last tokens."""
    if not prompts:
        raise ValueError("encode_prompts: no prompts")
    old_side = getattr(tokenizer, "padding_side", "left")
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    ids = enc["input_ids"].long()
    mask = enc["attention_mask"].bool()
    if max_prompt_tokens is not None and ids.shape[1] > max_prompt_tokens:
        ids, mask = ids[:, -int(max_prompt_tokens) :], mask[:, -int(max_prompt_tokens) :]
    empty = (~mask.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"prompt(s) {empty} encoded to zero tokens")
    return ids.contiguous(), mask.contiguous()


def response_mask_from_ids(response_ids: Tensor, stops: list[int]) -> Tensor:
    """True up to and including the first stop token of each row (all True when there is none)."""
    is_stop = torch.zeros_like(response_ids, dtype=torch.bool)
    for e in stops:
        is_stop |= response_ids == e
    before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()  # stop tokens strictly before t
    return before == 0


def _generation_config(tokenizer, stops, pad, *, temperature, top_p, top_k, max_new_tokens):
    """A fresh ``GenerationConfig`` with exactly these settings: the model's own generation
    defaults (a repetition penalty, top-k 50, ...) never change the sampling distribution."""
    from transformers import GenerationConfig

    kw: dict = dict(max_new_tokens=int(max_new_tokens), pad_token_id=pad, eos_token_id=list(stops))
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
    else:
        kw.update(do_sample=False)
    return GenerationConfig(bos_token_id=getattr(tokenizer, "bos_token_id", None), **kw)


def _generate(model, input_ids: Tensor, attention_mask: Tensor, gen_config):
    """``model.generate`` with ``gen_config`` and nothing else: transformers fills every setting
    a config leaves unset from ``model.generation_config`` (a checkpoint's repetition penalty,
    say), so the model's own config is swapped for a copy of ``gen_config`` during the call."""
    import copy

    had = "generation_config" in vars(model)
    saved = getattr(model, "generation_config", None)
    model.generation_config = copy.deepcopy(gen_config)
    try:
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_config
        )
    finally:
        if had:
            model.generation_config = saved
        else:
            del model.generation_config


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    n: int = 1,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    max_prompt_tokens: int | None = None,
    batch_size: int = 0,
    seed: int | None = None,
    with_entropy: bool = False,
) -> Generation:
    """Sample ``n`` responses per prompt (see the module docstring for the rules).

    ``batch_size`` (sequences per ``generate`` call, rounded down to whole prompts; 0 = all at
    once). ``seed=None`` draws from torch's global RNG (the trainer re-seeds it every step);
    an int seeds a forked RNG once, so the caller's stream is left untouched. ``with_entropy``
    also returns, per response, the sum over its valid tokens of the entropy of the model's raw
    next-token distribution (temperature 1, before top-p); it keeps the raw logits of a
    ``generate`` call, ``batch x max_new_tokens x vocabulary`` floats, so keep it for small
    vocabularies. The model's train/eval mode is restored."""
    _check_sampling(n, max_new_tokens, temperature, top_p)
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer, model)
    pad = _pad_id(tokenizer, stops)
    ids, mask = encode_prompts(tokenizer, prompts, max_prompt_tokens)
    P = len(prompts)
    per_call = max(1, (batch_size or P * n) // n)  # prompts per generate call
    gen_config = _generation_config(
        tokenizer,
        stops,
        pad,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
    )
    if with_entropy:
        gen_config.update(output_logits=True, return_dict_in_generate=True)
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        outs, ent = _generate_calls(
            model, ids, mask, n, per_call, gen_config, stops, device, seed, with_entropy
        )
    finally:
        if was_training:
            model.train()
    resp, rmask = _pad_responses(outs, P * n, pad, stops)
    texts, finish = _decode(tokenizer, resp, rmask, stops)
    return Generation(
        prompt_ids=ids.repeat_interleave(n, dim=0),
        prompt_mask=mask.repeat_interleave(n, dim=0),
        response_ids=resp,
        response_mask=rmask,
        group_ids=torch.arange(P, dtype=torch.long).repeat_interleave(n),
        texts=texts,
        finish=finish,
        entropy_sum=ent if with_entropy else None,
    )


def _check_sampling(n: int, max_new_tokens: int, temperature, top_p) -> None:
    """A ValueError naming the first setting of :func:`sample` out of its range."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature is None or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _generate_calls(
    model, ids, mask, n, per_call, gen_config, stops, device, seed, with_entropy
) -> tuple[list[Tensor], list[float]]:
    """``generate`` over ``per_call`` prompts at a time, each repeated ``n`` times: the new tokens
    of each call (on the CPU) and, with ``with_entropy``, each response's entropy sum. An int
    ``seed`` seeds a forked RNG (the caller's stream is left untouched)."""
    outs: list[Tensor] = []
    ent: list[float] = []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(int(seed))
        for s in range(0, ids.shape[0], per_call):
            c_ids = ids[s : s + per_call].repeat_interleave(n, dim=0)
            c_mask = mask[s : s + per_call].repeat_interleave(n, dim=0)
            out = _generate(model, c_ids.to(device), c_mask.long().to(device), gen_config)
            seq = out.sequences if with_entropy else out
            new = seq[:, ids.shape[1] :].cpu()
            outs.append(new)
            if with_entropy:
                valid = response_mask_from_ids(new, stops)
                logits = torch.stack(out.logits, dim=1).float()  # (rows, T, V) raw logits
                logp = torch.log_softmax(logits, dim=-1)
                h = -(logp.exp() * logp).sum(-1)
                ent.extend((h.cpu() * valid).sum(1).tolist())
    return outs, ent


def _pad_responses(outs: list[Tensor], rows: int, pad: int, stops: list[int]) -> tuple[Tensor, Tensor]:
    """The calls' outputs in one ``(rows, width)`` matrix padded with ``pad``, and its response
    mask (up to and including the first stop token; a call that generated nothing gives an empty
    response, a stop token alone)."""
    width = max(1, max(o.shape[1] for o in outs))
    resp = torch.full((rows, width), pad, dtype=torch.long)
    row = 0
    for o in outs:
        resp[row : row + o.shape[0], : o.shape[1]] = o
        if o.shape[1] == 0:  # nothing generated at all: an empty response
            resp[row : row + o.shape[0], 0] = stops[0]
        row += o.shape[0]
    rmask = response_mask_from_ids(resp, stops)
    row = 0
    for o in outs:  # columns beyond a shorter call's output are padding, whatever the pad id
        rmask[row : row + o.shape[0], max(o.shape[1], 1) :] = False
        row += o.shape[0]
    return resp, rmask


def _decode(tokenizer, resp: Tensor, rmask: Tensor, stops: list[int]) -> tuple[list[str], list[str]]:
    """Each response's text (its valid tokens without stop tokens) and how it ended (``stop``
    or ``length``)."""
    stop_set = set(stops)
    texts, finish = [], []
    for r, m in zip(resp.tolist(), rmask.tolist()):
        toks = [t for t, keep in zip(r, m) if keep]
        ended = bool(toks) and toks[-1] in stop_set
        finish.append("stop" if ended else "length")
        texts.append(tokenizer.decode([t for t in toks if t not in stop_set], skip_special_tokens=True))
    return texts, finish


class HFBackend:
    """:func:`sample` with one response per (repeated) prompt, in batches (CPU or GPU)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int = 16, device=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("tokenizer has neither a pad nor an eos token; set one")
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_pretrained(
        cls, path: str, *, device: str | None = None, dtype: str = "auto", batch_size: int = 16
    ):
        """Load model and tokenizer with ``from_pretrained`` (local folder, hub cache or a named
        model of :mod:`steer.models`; no download is forced here)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from steer.models import resolve

        path = resolve(path)

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
        model.eval()
        return cls(model, tok, batch_size=batch_size, device=device)

    def generate(
        self,
        prompts: list[str],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None = None,
    ) -> list[Completion]:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        out: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            g = sample(
                self.model,
                self.tokenizer,
                prompts[start : start + self.batch_size],
                1,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_tokens,
                seed=None if seed is None else int(seed) + start,
            )
            out.extend(Completion(t, n, f) for t, n, f in zip(g.texts, g.n_tokens, g.finish))
        return out


class VLLMBackend:
    """vLLM ``LLM.generate`` (GPU; needs the optional ``vllm`` package)."""

    name = "vllm"
    #: prompts handed to vLLM per call (it batches internally; results are written per call)
    batch_size = 512

    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        seed: int = 0,
        **llm_kwargs,
    ):
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "the vllm backend needs the 'vllm' package (GPU only): pip install 'steer[vllm]'"
            ) from e
        from steer.models import resolve

        self.llm = LLM(
            model=resolve(path),
            dtype="bfloat16" if dtype == "auto" else dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self,
        prompts: list[str],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None = None,
    ):
        from vllm import SamplingParams

        sp = SamplingParams(
            n=1,
            temperature=float(temperature),
            top_p=float(top_p) if temperature and temperature > 0 else 1.0,
            top_k=-1,
            max_tokens=int(max_tokens),
            # no per-request seed: repeated prompts (k samples) must differ; the LLM-level seed
            # makes the run reproducible
        )
        outs = self.llm.generate(prompts, sp, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            res.append(
                Completion(c.text, len(c.token_ids), "length" if c.finish_reason == "length" else "stop")
            )
        return res
