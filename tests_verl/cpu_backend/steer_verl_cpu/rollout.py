"""An HF-transformers rollout backend for verl 0.9.1 (test-only), ``rollout.name=hf_cpu``.

verl's only rollout backends are vLLM, SGLang and TRT-LLM servers. This stands in for them on a
machine without an accelerator, with the same three pieces verl expects:

- :class:`HFCPUServer`, a Ray actor holding an HF causal LM: token-in/token-out ``generate``
  (temperature / top-k / top-p sampling with a KV cache, optional per-token log-probs of the
  temperature-scaled distribution), ``load_weights`` for the trainer's weight updates, and no-op
  sleep / wake-up / cache / abort / profiling calls;
- :class:`HFCPUReplica`, the :class:`~verl.workers.rollout.replica.RolloutReplica` that launches
  one server per replica (hybrid mode: next to the trainer's workers);
- :class:`HFCPUServerAdapter`, the trainer-side :class:`~verl.workers.rollout.base.BaseRollout`
  that sends the trainer's weights to its server (``checkpoint_engine.backend=naive``).

It samples one request at a time; it is meant for tiny models and short responses.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

NAME = "hf_cpu"
SERVER_PREFIX = "steer_hf_cpu_server_"


def server_name(replica_rank: int) -> str:
    return f"{SERVER_PREFIX}{replica_rank}"


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering of one row of (temperature-scaled) logits."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = torch.where(logits < kth, torch.full_like(logits, -float("inf")), logits)
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        remove = cum - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = torch.where(remove, torch.full_like(sorted_logits, -float("inf")), sorted_logits)
        logits = torch.full_like(logits, -float("inf")).scatter(0, order, sorted_logits)
    return logits


class HFCPUServer:
    """A Ray actor serving one HF causal LM on CPU (token in, token out)."""

    def __init__(self, config, model_config, replica_rank: int = 0) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.replica_rank = replica_rank
        path = getattr(model_config, "local_path", None) or model_config.path
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="sdpa"
        )
        self.model.eval()
        tok = AutoTokenizer.from_pretrained(path)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.global_steps = None
        self.generated = 0
        self.weight_updates = 0
        self.seed = int(getattr(config, "seed", 0) or 0) + replica_rank
        self.gen = torch.Generator().manual_seed(self.seed)

    # ---- generation --------------------------------------------------------------------------
    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data=None,
        video_data=None,
        audio_data=None,
        mm_processor_kwargs=None,
        priority: int = 0,
        **_: Any,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None or audio_data is not None:
            raise ValueError("the hf_cpu test rollout serves text only")
        sp = dict(sampling_params)
        cfg = self.config
        max_tokens = sp.pop("max_tokens", None) or sp.pop("max_new_tokens", None)
        if max_tokens is None:
            max_tokens = min(cfg.response_length, cfg.prompt_length + cfg.response_length - len(prompt_ids))
        max_tokens = max(1, int(max_tokens))
        temperature = float(sp.get("temperature", 1.0))
        top_k = sp.get("top_k", -1)
        top_k = None if top_k is None or int(top_k) <= 0 else int(top_k)
        top_p = sp.get("top_p", 1.0)
        want_logprobs = bool(sp.get("logprobs"))

        with torch.no_grad():
            out_ids, out_lp = self._sample(list(prompt_ids), max_tokens, temperature, top_k, top_p, sp)
        self.generated += 1
        return TokenOutput(
            token_ids=out_ids,
            log_probs=out_lp if want_logprobs else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    def _sample(self, prompt_ids, max_tokens, temperature, top_k, top_p, sp):
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        past = None
        out_ids: list[int] = []
        out_lp: list[float] = []
        for _step in range(max_tokens):
            res = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1].float()
            if temperature <= 0:  # greedy
                tok = int(torch.argmax(logits))
                lp = float(torch.log_softmax(logits, -1)[tok])
            else:
                scaled = logits / temperature
                filt = _filter_logits(scaled, top_k, top_p)
                probs = torch.softmax(filt, dim=-1)
                tok = int(torch.multinomial(probs, 1, generator=self.gen))
                lp = float(torch.log_softmax(scaled, -1)[tok])
            out_ids.append(tok)
            out_lp.append(lp)
            if tok in self.eos_ids and not sp.get("ignore_eos", False):
                break
            ids = torch.tensor([[tok]], dtype=torch.long)
        return out_ids, out_lp

    # ---- weights -----------------------------------------------------------------------------
    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> dict:
        state = dict(named_tensors)
        own = self.model.state_dict()
        unexpected = sorted(k for k in state if k not in own)
        if unexpected:
            raise ValueError(f"weight update has names the rollout model does not know: {unexpected[:5]}")
        for k, v in state.items():
            if tuple(own[k].shape) != tuple(v.shape):
                raise ValueError(f"weight update {k!r}: shape {tuple(v.shape)} != {tuple(own[k].shape)}")
        self.model.load_state_dict(state, strict=False)
        self.weight_updates += 1
        return {"loaded": len(state), "of": len(own)}

    def stats(self) -> dict:
        return {"generated": self.generated, "weight_updates": self.weight_updates, "pid": os.getpid()}

    # ---- control calls (nothing to free on CPU) ----------------------------------------------
    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def wake_up(self, tags: list[str] | None = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def wait_for_requests_to_drain(self):
        return None

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False):
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self):
        return None

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True):
        return {"aborted": False}

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFCPUReplica(RolloutReplica):
    """One :class:`HFCPUServer` per replica (hybrid mode)."""

    async def launch_servers(self):
        name = server_name(self.replica_rank)
        server = (
            ray.remote(HFCPUServer)
            .options(name=name, num_cpus=1, max_concurrency=self.max_concurrency)
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        await server.stats.remote()  # wait until the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-cpu-replica-{self.replica_rank}"

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFCPUServerAdapter(BaseRollout):
    """The trainer-side rollout: forwards the trainer's weights to this replica's server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % world
        self.server_handle = None

    def _server(self):
        if self.rollout_rank != 0:
            return None
        if self.server_handle is None:
            self.server_handle = ray.get_actor(server_name(self.replica_rank))
        return self.server_handle

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self, weights, global_steps: int | None = None, wire_format: str = "named_tensors", **kwargs
    ):
        if wire_format != "named_tensors":
            raise ValueError(
                f"the hf_cpu test rollout takes wire_format='named_tensors', got {wire_format!r}"
            )
        tensors: list[tuple[str, torch.Tensor]] = []
        if inspect.isasyncgen(weights) or hasattr(weights, "__aiter__"):
            async for name, w in weights:
                tensors.append((name, w.detach().to("cpu", copy=True)))
        else:
            for name, w in weights:
                tensors.append((name, w.detach().to("cpu", copy=True)))
        server = self._server()
        if server is not None:
            await server.load_weights.remote(tensors)
            if global_steps is not None:
                await server.set_global_steps.remote(global_steps)


def register() -> None:
    """Add ``hf_cpu`` to verl's rollout registries (idempotent)."""
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    rollout_base._ROLLOUT_REGISTRY[(NAME, "async")] = f"{__name__}.HFCPUServerAdapter"
    RolloutReplicaRegistry.register(NAME, lambda: HFCPUReplica)
