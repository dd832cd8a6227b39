"""steer probe on a tiny model: the measured change against a brute-force recomputation, the SGD
update against an independently written loss gradient, the estimator columns against the core
functions on float64 reference statistics, the c_t / JVP totals, equal-reward groups, files, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from steer.analysis.correlation import agreement
from steer.analysis.probe import ESTIMATOR_NAMES, parse_optimizers, run_probe
from steer.core.estimators import omega_cov, omega_exact, omega_paper, omega_reference
from steer.train.jvp import trainable_parameters
from tests.analysis.helpers import CoinTask

SMALL = [
    "trainer.num_threads=1",
    "rollout.max_new_tokens=8",
    "task.train_size=16",
    "task.heldout_size=4",
]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    from steer.testbed import build_model, build_tokenizer, save_policy

    tok = build_tokenizer()
    model = build_model(
        tok,
        "micro",
        seed=0,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        initializer_range=0.3,
    )  # a wide init: peaked next-token distributions (a near-uniform one barely changes its entropy)
    return save_policy(model, tok, tmp_path_factory.mktemp("probe_policy") / "policy")


def _cfg(policy_dir, *extra):
    from steer.train.config import load_config

    return load_config("testbed", [*SMALL, f"model.name_or_path={policy_dir}", *extra])


@pytest.fixture(scope="module")
def probe_run(policy_dir, tmp_path_factory):
    from steer.testbed import load_policy
    from steer.train.tasks import build_task

    cfg = _cfg(policy_dir)
    model, tok = load_policy(policy_dir)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    out_dir = tmp_path_factory.mktemp("probe_out")
    out = run_probe(
        cfg,
        model=model,
        tokenizer=tok,
        task=CoinTask(build_task(cfg.task)),
        optimizers=["sgd:1", "adamw:1e-3"],
        num_prompts=4,
        n=4,
        bins=6,
        out_dir=out_dir,
        return_details=True,
        log=lambda m: None,
    )
    return out, model, before, out_dir


def _ref_stats(model, batch):
    """float64, per row (unpadded sequence, no mask): logp, H, P2, S2 of every valid position."""
    B, T = batch.response_ids.shape
    z = {n: torch.zeros(B, T, dtype=torch.float64) for n in ("logp", "entropy", "p2", "s2")}
    with torch.no_grad():
        for b in range(B):
            real = batch.prompt_ids[b][batch.prompt_mask[b]]
            seq = torch.cat([real, batch.response_ids[b]])
            logits = model(input_ids=seq[None]).logits[0].double()
            for t in range(T):
                if not batch.response_mask[b, t]:
                    continue
                lsm = torch.log_softmax(logits[len(real) - 1 + t], -1)
                p = lsm.exp()
                z["logp"][b, t] = lsm[batch.response_ids[b, t]]
                z["entropy"][b, t] = -(p * lsm).sum()
                z["p2"][b, t] = (p * p).sum()
                z["s2"][b, t] = (p * p * lsm).sum()
    return z


def _model64(policy_dir, update=None):
    from steer.testbed import load_policy

    m, _ = load_policy(policy_dir)
    if update is not None:
        with torch.no_grad():
            for k, p in trainable_parameters(m).items():
                p.add_(update[k].cpu())
    return m.double().eval()


def test_measured_change_equals_brute_force(probe_run, policy_dir):
    out, _, _, _ = probe_run
    det = out["details"]
    batch = det["batch"]
    mask = batch.response_mask
    base = _ref_stats(_model64(policy_dir), batch)
    for tag in out["settings"]:
        after = _ref_stats(_model64(policy_dir, det["updates"][tag]), batch)
        ref = (after["entropy"] - base["entropy"])[mask]
        measured = det["tokens"][tag]["measured"]
        assert float(ref.abs().max()) > 1e-3  # the step moved the entropies
        assert float((measured - ref).abs().max()) < 2e-5, tag


def test_sgd_update_is_minus_lr_times_the_grpo_gradient(probe_run, policy_dir):
    """On-policy GRPO (token-mean, r = 1, nothing clipped): grad L = -(1/N) sum_t A_t grad log pi_t."""
    out, _, _, _ = probe_run
    det = out["details"]
    batch, adv = det["batch"], det["advantages"].double()
    mask = batch.response_mask
    m = _model64(policy_dir)
    params = trainable_parameters(m)
    n_tok = int(mask.sum())
    total = 0.0
    for b in range(batch.response_ids.shape[0]):
        real = batch.prompt_ids[b][batch.prompt_mask[b]]
        seq = torch.cat([real, batch.response_ids[b]])
        logits = m(input_ids=seq[None]).logits[0].double()
        for t in range(batch.response_ids.shape[1]):
            if mask[b, t]:
                lsm = torch.log_softmax(logits[len(real) - 1 + t], -1)
                total = total + adv[b, t] * lsm[batch.response_ids[b, t]]
    loss = -total / n_tok
    grads = torch.autograd.grad(loss, list(params.values()))
    upd = det["updates"]["sgd_lr1"]
    num = sum(float(((upd[k].double() + 1.0 * g) ** 2).sum()) for k, g in zip(params, grads))
    den = sum(float(((1.0 * g) ** 2).sum()) for g in grads)
    assert num**0.5 < 1e-4 * den**0.5
    # the loss's own per-token coefficient is A / N (what the estimators are fed)
    u = det["tokens"]["sgd_lr1"]["coef_u"]
    torch.testing.assert_close(u, (adv / n_tok)[mask], rtol=1e-5, atol=1e-9)


def test_estimators_match_core_functions_on_reference_statistics(probe_run, policy_dir):
    out, _, _, _ = probe_run
    det = out["details"]
    batch, adv = det["batch"], det["advantages"].double()
    mask = batch.response_mask
    ref = _ref_stats(_model64(policy_dir), batch)
    u = torch.where(mask, adv / int(mask.sum()), torch.zeros((), dtype=torch.float64))
    for tag, r in out["settings"].items():
        lr = r["setting"]["lr"]
        tok = det["tokens"][tag]
        expected = {
            "paper": omega_paper(u, ref["logp"], ref["entropy"], lr),
            "reference": omega_reference(u, ref["logp"], ref["logp"], ref["entropy"], lr=lr),
            "exact": omega_exact(u, ref["logp"], ref["entropy"], ref["p2"], ref["s2"], lr),
            "cov": omega_cov(ref["logp"], u, mask, lr=lr),
        }
        for k, e in expected.items():
            e = e[mask]
            assert float((tok[f"est_{k}"] - e).abs().max()) <= 1e-4 * float(e.abs().max()) + 1e-12, (tag, k)
        # the reported agreement numbers are the core's on the per-token arrays
        for k in ESTIMATOR_NAMES:
            a = agreement(tok[f"est_{k}"], tok["measured"])
            for key in ("mse", "pearson", "spearman", "sign_agreement"):
                got, want = r["agreement"][k][key], a[key]
                assert (got != got and want != want) or got == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert r["agreement"]["jvp"]["tokens"] == int(mask.sum())


def test_totals_cause_jvp_and_preconditioner(probe_run):
    out, _, _, _ = probe_run
    sgd = out["settings"]["sgd_lr1"]
    t = sgd["totals"]
    # SGD: sum_t c_t is the JVP of the total entropy along the full update
    assert t["cause"] == pytest.approx(t["jvp"], rel=1e-5, abs=1e-9)
    assert t["jvp"] == pytest.approx(t["jvp_total_along_update"], rel=1e-5, abs=1e-9)
    assert sgd["update"]["residual_vs_preconditioned_gradient"] < 1e-5
    adam = out["settings"]["adamw_lr0.001"]
    # a fresh AdamW step without weight decay is exactly P * (-grad L) with P from its state
    assert adam["update"]["residual_vs_preconditioned_gradient"] < 1e-3
    assert adam["totals"]["cause"] == pytest.approx(adam["totals"]["jvp"], rel=1e-3)
    for r in out["settings"].values():
        for k in ESTIMATOR_NAMES:
            assert set(r["agreement"][k]) >= {"mse", "pearson", "spearman", "sign_agreement", "tokens"}
        assert (
            sum(b["jvp"]["tokens"] for b in r["per_prob_bucket"].values()) == r["agreement"]["jvp"]["tokens"]
        )
        assert sum(r["fig1_binned"]["count"]) + r["fig1_binned"]["outside"] == r["agreement"]["jvp"]["tokens"]
        assert isinstance(r["verdict"], str) and r["verdict"]


def test_equal_reward_groups_contribute_nothing(probe_run):
    out, _, _, _ = probe_run
    det = out["details"]
    batch = det["batch"]
    mask = batch.response_mask
    n = out["data"]["rollouts_per_prompt"]
    groups = det["rewards"].view(-1, n)
    equal = (groups == groups[:, :1]).all(1).repeat_interleave(n)  # (B,) rows of equal-reward groups
    rows = equal[:, None].expand_as(mask)[mask]
    assert 0 < out["data"]["tokens_with_nonzero_advantage"] <= out["data"]["valid_tokens"]
    for tag in out["settings"]:
        tok = det["tokens"][tag]
        assert bool((tok["coef_u"][rows] == 0).all())
        assert bool((tok["est_cause"][rows] == 0).all())
        assert bool((tok["est_paper"][rows] == 0).all())


def test_outputs_written_and_model_restored(probe_run):
    out, model, before, out_dir = probe_run
    for k, p in model.named_parameters():
        assert torch.equal(p.detach(), before[k]), k
    data = json.loads((out_dir / "probe.json").read_text())
    assert set(data["settings"]) == {"sgd_lr1", "adamw_lr0.001"}
    assert data["settings"]["sgd_lr1"]["agreement"]["jvp"]["tokens"] == out["data"]["valid_tokens"]
    md = (out_dir / "probe.md").read_text()
    assert "## sgd_lr1" in md and "**Verdict:**" in md
    for files in data["files"]["plots"].values():
        assert len(files) == 4
        for name in files.values():
            assert (out_dir / name).stat().st_size > 1000
    import numpy as np

    arrays = np.load(out_dir / "tokens.npz")
    assert arrays["sgd_lr1/measured"].shape == (out["data"]["valid_tokens"],)


def test_steer_method_coefficient_includes_its_weights(policy_dir):
    from steer.train.tasks import build_task

    cfg = _cfg(policy_dir, "method.name=steer")
    out = run_probe(
        cfg,
        task=CoinTask(build_task(cfg.task)),
        optimizers=["sgd:1"],
        num_prompts=4,
        n=4,
        return_details=True,
        log=lambda m: None,
    )
    det = out["details"]
    mask = det["batch"].response_mask
    tok = det["tokens"]["sgd_lr1"]
    n_tok = int(mask.sum())
    # u = I_clip r A lambda / N on-policy; lambda = the STEER weights of the method itself
    expected = det["advantages"].double()[mask] * tok["steer_weight"] / n_tok
    torch.testing.assert_close(tok["coef_u"], expected, rtol=1e-5, atol=1e-10)
    assert float(tok["steer_weight"].min()) >= 0.7 - 1e-6
    r = out["settings"]["sgd_lr1"]
    assert r["totals"]["cause"] == pytest.approx(r["totals"]["jvp"], rel=1e-5, abs=1e-9)
    f15 = r["fig15_weight_vs_abs_change"]
    assert "steer" in f15["weights_from"]
    # the summary of the weight distribution: computed from the tokens' weights, independently here
    lam = tok["steer_weight"].double()
    assert f15["weight_mean"] == pytest.approx(float(lam.mean()), rel=1e-9)
    assert f15["weight_min"] == pytest.approx(float(lam.min()), rel=1e-9)
    assert f15["weight_share_below_0_9"] == pytest.approx(sum(float(x) < 0.9 for x in lam) / len(lam), abs=1e-12)


def test_steer_scope_statistics_span_every_micro_batch(policy_dir):
    """STEER's max|Omega| is the whole batch's however the rows are split into micro-batches (the
    statistics go through the method's own reduction): the loss coefficient u is the same with
    four micro-batches as with one."""
    from steer.train.tasks import build_task

    cfg = _cfg(policy_dir, "method.name=steer")
    coef = []
    for mb in (0, 4):
        out = run_probe(
            cfg,
            task=CoinTask(build_task(cfg.task)),
            optimizers=["sgd:1"],
            num_prompts=4,
            n=4,
            micro_batch_size=mb,
            return_details=True,
            log=lambda m: None,
        )
        coef.append(out["details"]["tokens"]["sgd_lr1"]["coef_u"])
    assert float(coef[0].abs().max()) > 0
    torch.testing.assert_close(coef[1], coef[0], rtol=1e-6, atol=1e-12)


def test_parse_optimizers_and_bad_arguments(policy_dir):
    assert [s.tag for s in parse_optimizers("sgd:0.1, adamw:1e-4")] == ["sgd_lr0.1", "adamw_lr0.0001"]
    assert parse_optimizers([("SGD", 1)])[0].name == "sgd"
    for bad, msg in [
        ("rmsprop:1", "unknown optimiser"),
        ("sgd", "must look like"),
        ("sgd:x", "not a number"),
        ("sgd:-1", "finite number > 0"),
        ("sgd:nan", "finite number > 0"),
        ("", "at least one"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_optimizers(bad)
    cfg = _cfg(policy_dir)
    with pytest.raises(ValueError, match="bins"):
        run_probe(cfg, bins=1, log=lambda m: None)
    with pytest.raises(ValueError, match="grad_clip"):
        run_probe(cfg, grad_clip=-1.0, log=lambda m: None)
    with pytest.raises(ValueError, match="n must be >= 2"):
        run_probe(cfg, n=1, log=lambda m: None)
    with pytest.raises(ValueError, match="fewer than num_prompts"):
        run_probe(cfg, num_prompts=10_000, log=lambda m: None)


def test_cli_errors(policy_dir, tmp_path, capsys):
    from steer.cli import main

    assert main(["probe", "bad.key=1"]) == 2
    assert "'bad'" in capsys.readouterr().err
    assert main(["probe", "--optim", "adam:1", f"model.name_or_path={policy_dir}", *SMALL]) == 1
    assert "unknown optimiser" in capsys.readouterr().err
    # a random policy never solves countdown: every group is equal-reward, nothing would move
    rc = main(
        [
            "probe",
            "--prompts",
            "2",
            "--n",
            "2",
            "--no-plots",
            "--out",
            str(tmp_path / "o"),
            f"model.name_or_path={policy_dir}",
            *SMALL,
        ]
    )
    assert rc == 1
    assert "advantage 0" in capsys.readouterr().err


def test_sweep_variants_one_factor_at_a_time():
    from steer.analysis.probe import sweep_variants

    v = sweep_variants(widths=(64, 128), depths=(1, 2), vocabs=(None, 2048))
    keys = [(x["hidden_size"], x["num_hidden_layers"], x["vocab_size"]) for x in v]
    assert keys == [(128, 2, None), (64, 2, None), (128, 1, None), (128, 2, 2048)]


@pytest.mark.slow
def test_sweep_runs_and_records_every_variant(tmp_path):
    """Two variants with a few warm-start steps (the coin task gives mixed rewards)."""
    from steer.analysis.probe import run_sweep
    from steer.train.config import load_config
    from steer.train.tasks import build_task

    overrides = [*SMALL, "task.train_size=300"]
    cfg = load_config("testbed", overrides)
    out = run_sweep(
        "testbed",
        overrides,
        widths=(64,),
        depths=(),
        vocabs=(),
        warm_start_steps=5,
        optimizers=["sgd:1"],
        num_prompts=4,
        n=4,
        out_dir=tmp_path / "sweep",
        cache_dir=tmp_path / "ws",
        plots=True,
        task=CoinTask(build_task(cfg.task)),
        log=lambda m: None,
    )
    assert [r["variant"] for r in out["rows"]] == ["h128_L2_Vtok", "h64_L2_Vtok"]
    assert out["rows"][1]["parameters"] < out["rows"][0]["parameters"]
    for r in out["rows"]:
        for k in ESTIMATOR_NAMES:
            assert f"{k}_spearman" in r
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    assert "Verdict" in (tmp_path / "sweep" / "sweep.md").read_text()
    data = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert data["warm_start"]["steps"] == 5 and data["errors"] == []


def test_probe_from_a_trainer_checkpoint(policy_dir, tmp_path):
    """One trainer step (the coin task, so the gradient is not zero), then the probe from its
    checkpoint: the weights are the checkpoint's, AdamW continues its state (momentum: the update
    is no longer P * (-grad L)), SGD stays exact."""
    from steer.train.tasks import build_task
    from steer.train.trainer import Trainer

    run = tmp_path / "run"
    cfg = _cfg(
        policy_dir,
        "trainer.steps=1",
        "trainer.prompts_per_step=4",
        "trainer.num_mini_batches=1",
        "rollout.n=4",
        "eval.every=0",
        "eval.at_start=false",
        "eval.at_end=false",
        "eval.n_samples=4",
        "eval.ks=[1,2,4]",
        "checkpoint.every=1",
        "logging.progress=false",
        "logging.tensorboard=false",
        f"logging.out_dir={run}",
    )
    trainer = Trainer(cfg, task=CoinTask(build_task(cfg.task)), log=lambda m: None)
    trainer.fit()
    out = run_probe(
        None,
        ["trainer.num_threads=1"],
        checkpoint=run,
        task=CoinTask(build_task(cfg.task)),
        optimizers=["sgd:1", "adamw:1e-3"],
        num_prompts=4,
        n=4,
        return_details=True,
        log=lambda m: None,
    )
    assert out["checkpoint"]["step"] == 1
    assert out["model"]["name_or_path"] == str(policy_dir)
    adam = out["settings"]["adamw_lr0.001"]["update"]
    sgd = out["settings"]["sgd_lr1"]["update"]
    assert adam["optimizer_state"] == "checkpoint" and sgd["optimizer_state"] == "fresh"
    assert sgd["residual_vs_preconditioned_gradient"] < 1e-5
    assert adam["residual_vs_preconditioned_gradient"] > 1e-3  # the first step's momentum
    # the probe's theta_0 is the checkpoint's: its statistics are the trained model's
    from steer.train.rollout import response_token_stats

    b = out["details"]["batch"]
    st = response_token_stats(trainer.model.eval(), b.prompt_ids, b.prompt_mask, b.response_ids)
    mk = b.response_mask
    torch.testing.assert_close(
        out["details"]["base"]["entropy"][mk], st.entropy.detach()[mk], rtol=1e-5, atol=1e-6
    )
    from steer.testbed import load_policy

    st0 = response_token_stats(load_policy(policy_dir)[0].eval(), b.prompt_ids, b.prompt_mask, b.response_ids)
    assert float((st0.entropy.detach()[mk] - st.entropy.detach()[mk]).abs().max()) > 1e-4  # the step mattered
    with pytest.raises(ValueError, match="no valid steer train checkpoint"):
        run_probe(None, checkpoint=tmp_path / "nothing", log=lambda m: None)


@pytest.mark.parametrize("method", ["entropy_bonus", "clip_cov"])
def test_entropy_term_and_random_selection(policy_dir, method):
    """An entropy bonus enters c_t through v_t = -dL/dH_t (= coef / N); a method that draws random
    tokens (Clip-Cov) draws the same ones for every setting. Sum c_t = sum jvp for SGD either way."""
    from steer.train.tasks import build_task

    cfg = _cfg(policy_dir, f"method.name={method}")
    out = run_probe(
        cfg,
        task=CoinTask(build_task(cfg.task)),
        optimizers=["sgd:1", "sgd:0.5"],
        num_prompts=4,
        n=4,
        return_details=True,
        log=lambda m: None,
    )
    det = out["details"]
    n_tok = int(det["batch"].response_mask.sum())
    for tag, r in out["settings"].items():
        assert r["totals"]["cause"] == pytest.approx(r["totals"]["jvp"], rel=1e-5, abs=1e-9), tag
    a, b = det["tokens"]["sgd_lr1"], det["tokens"]["sgd_lr0.5"]
    assert torch.equal(a["coef_u"], b["coef_u"])
    if method == "entropy_bonus":
        coef = cfg.method.get("entropy_coef", 0.001)
        torch.testing.assert_close(a["coef_v"], torch.full_like(a["coef_v"], coef / n_tok), rtol=1e-5, atol=0)
    else:
        assert bool((a["coef_v"] == 0).all())


def test_reference_is_theta0_and_cause_methods_are_refused(policy_dir):
    """The probe's KL reference is theta_0 itself (the trainer's stages run without the trainer's
    copy of the model): on the same rollouts a KL penalty adds nothing to the loss gradient at
    theta_0, so its SGD update is GRPO's. A method whose loss needs the trainer's cause pass is
    refused with a one-line error before any sampling."""
    from steer.train.tasks import build_task

    updates = {}
    for method in ("grpo", "kl_penalty"):
        extra = ["method.kl_coef=0.5"] if method == "kl_penalty" else []
        cfg = _cfg(policy_dir, f"method.name={method}", *extra)
        out = run_probe(
            cfg,
            task=CoinTask(build_task(cfg.task)),
            optimizers=["sgd:1"],
            num_prompts=4,
            n=4,
            return_details=True,
            log=lambda m: None,
        )
        updates[method] = out["details"]["updates"]["sgd_lr1"]
        if method == "kl_penalty":
            assert out["settings"]["sgd_lr1"]["loss_metrics"]  # the KL term ran (its metrics are there)
    assert max(float(u.abs().max()) for u in updates["grpo"].values()) > 0
    for k, u in updates["grpo"].items():
        torch.testing.assert_close(updates["kl_penalty"][k], u, rtol=1e-5, atol=1e-7)
    cfg = _cfg(policy_dir, "method.name=steer_causal")
    with pytest.raises(ValueError, match="cause pass"):
        run_probe(cfg, task=CoinTask(build_task(cfg.task)), optimizers=["sgd:1"], log=lambda m: None)
