"""Shared pieces of the TRL integration tests: a tiny Qwen2 policy and tokenizer built locally,
trainers of both kinds on identical copies of it, and synthetic loss batches."""

from __future__ import annotations

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from steer.integrations.trl import SteerGRPOConfig, SteerGRPOTrainer
from steer.testbed.model import build_model

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64
)
COMMON = dict(
    per_device_train_batch_size=4,
    num_generations=4,
    max_completion_length=8,
    report_to="none",
    bf16=False,
    use_cpu=True,
    save_strategy="no",
    dataloader_num_workers=0,
    logging_steps=1,
    learning_rate=1e-3,
)


def tiny_model(tokenizer, seed: int = 0):
    return build_model(tokenizer, preset="tiny", seed=seed, **TINY)


def prompt_dataset(n: int = 8) -> Dataset:
    return Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"make {i} from 1 2"}] for i in range(n)]}
    )


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 3) for c in completions]


def make_trainer(tokenizer, tmp_path, *, steer: bool, seed: int = 0, **cfg):
    kw = {**COMMON, "output_dir": str(tmp_path / ("steer" if steer else "stock")), "max_steps": 2, **cfg}
    if steer:
        args = SteerGRPOConfig(**kw)
        cls = SteerGRPOTrainer
    else:
        kw = {k: v for k, v in kw.items() if not k.startswith("steer_")}
        args = GRPOConfig(**kw)
        cls = GRPOTrainer
    return cls(
        model=tiny_model(tokenizer, seed),
        reward_funcs=length_reward,
        args=args,
        train_dataset=prompt_dataset(),
        processing_class=tokenizer,
    )


def synthetic_inputs(trainer, seed: int = 0, B: int = 6, P: int = 5, C: int = 7, empty_row: bool = True):
    """A loss batch as TRL's ``_generate_and_score_completions`` returns it: left-padded prompts,
    right-padded completions of different lengths (one empty when ``empty_row``), token advantages
    of both signs, and old log-probs off the current ones by up to +-0.6 so that both clips act."""
    g = torch.Generator().manual_seed(seed)
    V = trainer.model.config.vocab_size
    prompt_ids = torch.randint(7, V, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[0, :2] = 0
    completion_ids = torch.randint(7, V, (B, C), generator=g)
    lengths = torch.randint(1, C + 1, (B,), generator=g)
    lengths[1] = C
    if empty_row:
        lengths[2] = 0
    completion_mask = (torch.arange(C)[None, :] < lengths[:, None]).long()
    advantages = torch.randn(B, generator=g)
    advantages[3] = 0.0
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([prompt_mask, completion_mask], 1),
            C,
        )
    old = logps + (torch.rand(B, C, generator=g) - 0.5) * 1.2
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": logps + (torch.rand(B, C, generator=g) - 0.5) * 0.4,
        "num_items_in_batch": completion_mask.sum(),
    }


def loss_and_grads(trainer, inputs):
    trainer.model.train()
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(trainer.model, dict(inputs))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads
