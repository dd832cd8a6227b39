"""Generation backends for evaluation: HF ``generate`` (CPU or GPU, batched) and vLLM (optional).

A backend turns prompt strings (chat template already applied) into completions:
``generate(prompts, *, temperature, top_p, max_tokens, seed) -> list[Completion]`` (one per
prompt; repeat a prompt to sample it several times). Sampling follows the paper's evaluation
setting (temperature 1.0, top-p 0.7, no top-k; section 5.1 / spec evaluation.md §4);
temperature 0 means greedy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish: str  # "stop" (end-of-sequence token) or "length" (hit max_tokens)


class HFBackend:
    """Batched ``model.generate`` with left padding (CPU or GPU)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int = 16, device=None):
        import torch

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
        """Load model and tokenizer with ``from_pretrained`` (local folder or hub cache, no download
        is forced here)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

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
    ):
        import torch

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        # stop tokens: the model's generation config (Qwen lists <|im_end|> and <|endoftext|>)
        # plus the tokenizer's eos
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        stops = set(
            gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else []
        )
        if tok.eos_token_id is not None:
            stops.add(tok.eos_token_id)
        eos = sorted(stops) if stops else None
        out: list[Completion] = []
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
                if seed is not None:
                    torch.manual_seed(int(seed) + start)
                kw = dict(max_new_tokens=int(max_tokens), pad_token_id=tok.pad_token_id)
                if eos is not None:
                    kw["eos_token_id"] = eos
                if temperature and temperature > 0:
                    kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
                else:
                    kw.update(do_sample=False)
                with torch.no_grad():
                    seqs = self.model.generate(**enc, **kw)
                new = seqs[:, enc["input_ids"].shape[1] :]
                for row in new.tolist():
                    n, finish = len(row), "length"
                    hit = next((i for i, t in enumerate(row) if t in stops), None)
                    if hit is not None:
                        n, finish = hit + 1, "stop"
                    text = tok.decode(row[:n], skip_special_tokens=True)
                    out.append(Completion(text, n, finish))
        finally:
            tok.padding_side = old_side
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
        self.llm = LLM(
            model=path,
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
