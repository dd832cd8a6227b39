"""Forward-mode (JVP) primitives: how every token's entropy and log-prob move along a parameter direction.

These need a model, so they live here and not in the pure core. Two decompositions of the
entropy change of one update ``Delta theta`` (see docs/probe.md):

- :func:`linearised_entropy_change`: per *state* s_t, the first-order change of that state's
  entropy along the actual update, ``<grad H_t, Delta theta>`` (one JVP of every token's entropy).
  It contains the cross-token effects that the paper's Assumption 1 ignores (token j's gradient
  moving state t's distribution).
- :func:`per_token_cause`: per *token's own gradient*, its contribution to the batch's total
  entropy change, ``c_t = <u_t grad log pi_t + v_t grad H_t, P grad H_batch>``, where the update is
  ``Delta theta = P * sum_t (u_t grad log pi_t + v_t grad H_t)`` (``u_t = -dL/d log pi_t`` and
  ``v_t = -dL/dH_t`` are the loss's own per-token coefficients, normaliser included, ``P`` the
  optimiser's diagonal preconditioner, learning rate included) and ``H_batch = sum_t H_t`` over the
  valid tokens. So ``sum_t c_t = <grad H_batch, Delta theta>``, the linearised change of the
  batch's total entropy (exactly, for a plain SGD step). Cost: one backward (``grad H_batch``) and
  one JVP of every log pi_t and H_t along ``P grad H_batch``.

Under Assumption 1 (one independent logit vector per state, distinct states) both decompositions
equal the exact first-order estimator of :func:`steer.core.estimators.omega_exact`.

A batch is any object with ``prompt_ids`` (B, P) left-padded, ``prompt_mask`` (B, P),
``response_ids`` (B, T) right-padded and ``response_mask`` (B, T) (e.g.
:class:`steer.train.rollout.Rollouts`). Forward passes go through
:func:`steer.train.rollout.response_logits`, the trainer's own scoring forward, with the parameters
swapped in by ``torch.func.functional_call``. Forward-mode AD needs every op of the model to have a
forward-mode rule: use the eager attention implementation (``model.set_attn_implementation("eager")``
or ``from_pretrained(..., attn_implementation="eager")``); :func:`require_eager_attention` switches
a model that supports it. The core's ``token_stats_from_logits`` is a custom autograd function
without a forward-mode rule, so the JVP path computes log pi and H with ``log_softmax`` (the tests
check both agree).

Parameter dictionaries (directions, preconditioners, parameter values) are keyed by
``model.named_parameters()`` names of the parameters that require a gradient; a name missing from a
direction means a zero tangent there.

A :class:`Subset` (:func:`last_layers`) restricts :func:`entropy_gradient` and
:func:`jvp_response_stats` to the parameters of the last K decoder layers, the final norm and the
output head: only those carry a gradient leaf or a tangent, every other parameter is a constant, so
the layers below carry neither an autograd graph nor a tangent (where a saving would come from). Its
dictionaries are keyed by *role* names (``model.named_parameters(remove_duplicate=False)``): with
tied input and output embeddings the head's role (``lm_head.weight``) is a parameter of its own
there, the embedding lookup keeps the constant matrix, and the role's optimiser state is the tied
tensor's (:attr:`Subset.source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call, jvp

from steer.core.errors import NonFiniteError
from steer.core.stats import token_stats_from_logits
from steer.train.rollout import response_logits

__all__ = [
    "Subset",
    "entropy_gradient",
    "jvp_response_stats",
    "last_layers",
    "linearised_entropy_change",
    "per_token_cause",
    "require_eager_attention",
    "trainable_parameters",
]

Params = Mapping[str, Tensor]


def trainable_parameters(model) -> dict[str, Tensor]:
    """``{name: parameter}`` of the parameters that require a gradient (tied weights once)."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


@dataclass(frozen=True)
class Subset:
    """The parameters a restricted pass differentiates: ``source`` maps each role name (a
    ``named_parameters(remove_duplicate=False)`` name) to the trainable parameter's name in
    :func:`trainable_parameters` (they differ for a tied output head); ``layers`` the number of
    decoder layers included and ``total_layers`` the model's."""

    source: dict[str, str]
    layers: int
    total_layers: int

    @property
    def tied_head(self) -> bool:
        return any(role != name for role, name in self.source.items())


def _decoder(model):
    get = getattr(model, "get_decoder", None)
    dec = get() if callable(get) else None
    layers = getattr(dec, "layers", None)
    if layers is None:
        layers = getattr(dec, "h", None)
    norm = getattr(dec, "norm", None)
    if norm is None:
        norm = getattr(dec, "ln_f", None)
    head_get = getattr(model, "get_output_embeddings", None)
    head = head_get() if callable(head_get) else None
    if not isinstance(layers, torch.nn.ModuleList) or head is None:
        raise ValueError(
            f"cannot find the decoder layers and output head of {type(model).__name__} "
            "(a transformers causal LM with get_decoder().layers and get_output_embeddings() is expected)"
        )
    return layers, norm, head


def last_layers(model, layers: int) -> Subset:
    """The :class:`Subset` of the last ``layers`` decoder layers, the final norm and the output head
    (its trainable parameters only). ``layers`` must be in 1..the model's number of decoder layers
    (ValueError otherwise); at the full count the subset still leaves out the input embedding's
    own role (use no subset for the full pass)."""
    if isinstance(layers, bool) or not isinstance(layers, int):
        raise ValueError(f"layers must be an int, got {layers!r}")
    blocks, norm, head = _decoder(model)
    n = len(blocks)
    if not 1 <= layers <= n:
        raise ValueError(f"layers must be in 1..{n} (the model's decoder layers), got {layers}")
    chosen = [*blocks[n - layers :], *([norm] if norm is not None else []), head]
    ids = {id(m) for m in chosen}
    canon = {id(p): k for k, p in trainable_parameters(model).items()}
    source: dict[str, str] = {}
    for mod_name, mod in model.named_modules():
        if id(mod) in ids:
            for pname, p in mod.named_parameters():
                if id(p) in canon:
                    source[f"{mod_name}.{pname}" if mod_name else pname] = canon[id(p)]
    if not source:
        raise ValueError(f"the last {layers} layer(s), the final norm and the head have no trainable parameter")
    return Subset(source=source, layers=layers, total_layers=n)


def _split(model, params: Params | None, subset: Subset | None):
    """(primals, constants): the tensors that carry a gradient leaf or a tangent, keyed by
    trainable name (no subset) or by role (a subset), and every other parameter by role name as a
    constant (None without a subset)."""
    primals = _resolve(model, params)
    if subset is None:
        return primals, None
    canon = {id(p): k for k, p in trainable_parameters(model).items()}
    const = {}
    for k, p in model.named_parameters(remove_duplicate=False):
        src = canon.get(id(p))
        const[k] = primals[src] if src is not None else p.detach()
    unknown = sorted(set(subset.source) - set(const))
    if unknown:
        raise ValueError(f"subset names {unknown[:5]} are not parameters of the model")
    return {role: const.pop(role) for role in subset.source}, const


def require_eager_attention(model) -> None:
    """Switch a transformers model to the eager attention implementation (forward-mode AD needs it).

    Raises ValueError when the model cannot be switched (its attention has no eager path).
    """
    cfg = getattr(model, "config", None)
    current = getattr(cfg, "_attn_implementation", None)
    if current in (None, "eager"):
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise ValueError(
            f"the model uses attention implementation {current!r} and cannot be switched to 'eager'; "
            "load it with attn_implementation='eager' (forward-mode AD needs it)"
        )
    try:
        setter("eager")
    except Exception as exc:  # transformers raises several types here
        raise ValueError(
            f"could not switch the model to eager attention ({exc}); forward-mode AD needs it"
        ) from exc


class _Bound:
    """A model with its parameters replaced by ``params`` (``functional_call``), callable like the model."""

    def __init__(self, model, params: Params, constants: Params | None = None):
        self._model = model
        self._params = params
        self._constants = constants

    def parameters(self):
        yield from self._params.values()

    def __call__(self, *args, **kwargs):
        if self._constants is None:
            return functional_call(self._model, dict(self._params), args, kwargs, strict=False)
        # every name given explicitly: a tied head's role is its own tensor, the lookup a constant
        both = {**self._constants, **self._params}
        return functional_call(self._model, both, args, kwargs, strict=False, tie_weights=False)


def _check_batch(batch) -> None:
    for name in ("prompt_ids", "prompt_mask", "response_ids", "response_mask"):
        if not isinstance(getattr(batch, name, None), Tensor):
            raise ValueError(f"batch.{name} must be a tensor (a Rollouts-like batch is expected)")
    b = batch.response_ids.shape[0]
    if batch.prompt_ids.shape[0] != b or tuple(batch.response_mask.shape) != tuple(batch.response_ids.shape):
        raise ValueError(
            f"batch shapes do not match: prompt_ids {tuple(batch.prompt_ids.shape)}, response_ids "
            f"{tuple(batch.response_ids.shape)}, response_mask {tuple(batch.response_mask.shape)}"
        )


def _row_chunks(n: int, micro_batch_size: int) -> list[slice]:
    size = int(micro_batch_size) if micro_batch_size and micro_batch_size > 0 else max(n, 1)
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def _resolve(model, params: Params | None) -> dict[str, Tensor]:
    if params is None:
        return {k: p.detach() for k, p in trainable_parameters(model).items()}
    names = set(trainable_parameters(model))
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown[:5]} (not trainable parameters of the model)")
    missing = sorted(names - set(params))
    if missing:
        raise ValueError(f"params lacks trainable parameter(s) {missing[:5]}")
    return {k: v.detach() for k, v in params.items()}


def _tangents(primals: dict[str, Tensor], direction: Params) -> dict[str, Tensor]:
    unknown = sorted(set(direction) - set(primals))
    if unknown:
        raise ValueError(f"direction has unknown parameter name(s) {unknown[:5]}")
    out = {}
    for k, p in primals.items():
        d = direction.get(k)
        if d is None:
            out[k] = torch.zeros_like(p)
            continue
        if tuple(d.shape) != tuple(p.shape):
            raise ValueError(f"direction[{k!r}] has shape {tuple(d.shape)}, the parameter {tuple(p.shape)}")
        d = d.detach().to(device=p.device, dtype=p.dtype)
        if not bool(torch.isfinite(d).all()):
            raise ValueError(f"direction[{k!r}] contains NaN/inf values")
        out[k] = d
    return out


def jvp_response_stats(
    model,
    batch,
    direction: Params,
    *,
    params: Params | None = None,
    temperature: float = 1.0,
    micro_batch_size: int = 0,
    subset: Subset | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(logp, H, dlogp, dH)``, each (B, T) float32 (float64 for a float64 model): the sampled
    tokens' log-probs and the entropies of the temperature-scaled next-token distributions at
    ``params`` (default: the model's current parameters), and their directional derivatives
    ``<grad logp_t, direction>``, ``<grad H_t, direction>`` (one forward-mode pass per
    ``micro_batch_size`` rows; 0 = all rows at once). Padding positions hold 0.

    ``subset`` (:func:`last_layers`): only its parameters carry a tangent, the others are
    constants (no tangent, hence no forward-mode work, below its first layer); ``direction`` is
    then keyed by the subset's role names.
    """
    _check_batch(batch)
    if not (float(temperature) > 0):
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    primals, const = _split(model, params, subset)
    tangents = _tangents(primals, direction)
    inv_t = 1.0 / float(temperature)
    mask = batch.response_mask.bool()
    outs: list[list[Tensor]] = [[], [], [], []]
    was_training = model.training
    model.eval()
    try:
        for sl in _row_chunks(batch.response_ids.shape[0], micro_batch_size):
            p_ids, p_mask, r_ids = batch.prompt_ids[sl], batch.prompt_mask[sl], batch.response_ids[sl]

            def f(p, p_ids=p_ids, p_mask=p_mask, r_ids=r_ids):
                logits = response_logits(_Bound(model, p, const), p_ids, p_mask, r_ids)
                if logits.dtype != torch.float64:
                    logits = logits.float()
                lsm = torch.log_softmax(logits * inv_t, dim=-1)
                ids = r_ids.to(lsm.device).unsqueeze(-1)
                logp = lsm.gather(-1, ids).squeeze(-1)
                ent = -(lsm.exp() * lsm).sum(-1)
                return logp, ent

            with torch.no_grad():
                (lp, h), (dlp, dh) = jvp(f, (primals,), (tangents,))
            for i, t in enumerate((lp, h, dlp, dh)):
                outs[i].append(t.detach())
    finally:
        model.train(was_training)
    res = [torch.cat(o).to(mask.device) for o in outs]
    zero = torch.zeros((), dtype=res[0].dtype, device=mask.device)
    lp, h, dlp, dh = (torch.where(mask, r, zero) for r in res)
    for name, t in (("log-prob", lp), ("entropy", h), ("log-prob JVP", dlp), ("entropy JVP", dh)):
        if not bool(torch.isfinite(t).all()):
            raise NonFiniteError(
                f"non-finite {name} on valid tokens (NaN/inf in the forward-mode pass)", name=name
            )
    return lp, h, dlp, dh


def linearised_entropy_change(
    model,
    batch,
    update: Params,
    *,
    params: Params | None = None,
    temperature: float = 1.0,
    micro_batch_size: int = 0,
) -> Tensor:
    """(B, T) first-order change ``<grad H_t, update>`` of every state's entropy along a parameter
    ``update`` (e.g. ``theta_after - theta_before`` of a real optimiser step), at ``params``
    (default: the model's current parameters). 0 on padding."""
    _, _, _, dh = jvp_response_stats(
        model, batch, update, params=params, temperature=temperature, micro_batch_size=micro_batch_size
    )
    return dh


def entropy_gradient(
    model,
    batch,
    *,
    params: Params | None = None,
    temperature: float = 1.0,
    micro_batch_size: int = 0,
    subset: Subset | None = None,
) -> dict[str, Tensor]:
    """``grad_theta H_batch`` with ``H_batch = sum_t H_t`` over the valid response tokens (one
    backward per ``micro_batch_size`` rows, through :func:`steer.core.stats.token_stats_from_logits`).
    Returns ``{name: gradient}`` for every trainable parameter (zeros where unused); with ``subset``
    (:func:`last_layers`) for its role names only, the other parameters held constant (no graph,
    so the backward stops at the subset's first layer; a tied head's role gets the gradient of its
    own use only)."""
    _check_batch(batch)
    primals, const = _split(model, params, subset)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in primals.items()}
    bound = _Bound(model, leaves, const)
    grads = {k: torch.zeros_like(v) for k, v in primals.items()}
    mask = batch.response_mask.bool()
    names = list(leaves)
    was_training = model.training
    model.eval()
    try:
        for sl in _row_chunks(batch.response_ids.shape[0], micro_batch_size):
            m = mask[sl]
            if not bool(m.any()):
                continue
            logits = response_logits(
                bound, batch.prompt_ids[sl], batch.prompt_mask[sl], batch.response_ids[sl]
            )
            st = token_stats_from_logits(
                logits, batch.response_ids[sl].to(logits.device), temperature=temperature, with_sums=False
            )
            total = st.entropy[m.to(st.entropy.device)].sum()
            gs = torch.autograd.grad(total, [leaves[k] for k in names], allow_unused=True)
            for k, g in zip(names, gs):
                if g is not None:
                    grads[k].add_(g)
    finally:
        model.train(was_training)
    for k, g in grads.items():
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError(f"non-finite entropy gradient in parameter {k!r}", name="entropy gradient")
    return grads


def _precondition(grad: dict[str, Tensor], preconditioner) -> dict[str, Tensor]:
    if preconditioner is None:
        return dict(grad)
    if isinstance(preconditioner, (int, float)):
        return {k: g * float(preconditioner) for k, g in grad.items()}
    if not isinstance(preconditioner, Mapping):
        raise ValueError("preconditioner must be None (identity), a number, or a {name: tensor} mapping")
    out = {}
    for k, g in grad.items():
        if k not in preconditioner:
            raise ValueError(f"preconditioner lacks parameter {k!r}")
        p = preconditioner[k]
        p = torch.as_tensor(p, dtype=g.dtype, device=g.device)
        if p.numel() != 1 and tuple(p.shape) != tuple(g.shape):
            raise ValueError(
                f"preconditioner[{k!r}] has shape {tuple(p.shape)}, the parameter {tuple(g.shape)}"
            )
        out[k] = g * p
    return out


def per_token_cause(
    model,
    batch,
    coef_logp: Tensor,
    coef_entropy: Tensor | None = None,
    *,
    preconditioner=None,
    params: Params | None = None,
    grad_entropy: dict[str, Tensor] | None = None,
    temperature: float = 1.0,
    micro_batch_size: int = 0,
) -> Tensor:
    """(B, T) contribution ``c_t`` of each token's own gradient to the batch's total entropy change.

    For an update ``Delta theta = P * sum_t (u_t grad log pi_t + v_t grad H_t)`` with
    ``u = coef_logp`` and ``v = coef_entropy`` (B, T) (for a loss L: ``u_t = -dL/d log pi_t``,
    ``v_t = -dL/dH_t``, its normaliser included) and the diagonal ``preconditioner`` P (None = the
    identity, a number = ``lr`` times the identity, or ``{name: tensor}`` for a diagonal P such as
    AdamW's ``lr / (sqrt(v_hat) + eps)``; the learning rate belongs in P), returns
    ``c_t = u_t <grad log pi_t, P grad H_batch> + v_t <grad H_t, P grad H_batch>`` with
    ``H_batch = sum_t H_t`` over valid tokens, so that ``sum_t c_t = <grad H_batch, Delta theta>``.
    ``grad_entropy`` reuses a precomputed :func:`entropy_gradient` at the same ``params``. 0 on
    padding; ValueError on shape mismatches or non-finite coefficients on valid tokens.
    """
    _check_batch(batch)
    mask = batch.response_mask.bool()
    for name, c in (("coef_logp", coef_logp), ("coef_entropy", coef_entropy)):
        if c is None:
            continue
        if tuple(c.shape) != tuple(mask.shape):
            raise ValueError(f"{name} has shape {tuple(c.shape)}, response_mask {tuple(mask.shape)}")
        if bool((mask.to(c.device) & ~torch.isfinite(c.detach())).any()):
            raise ValueError(f"{name} has NaN/inf values on valid tokens")
    g = grad_entropy
    if g is None:
        g = entropy_gradient(
            model, batch, params=params, temperature=temperature, micro_batch_size=micro_batch_size
        )
    direction = _precondition(g, preconditioner)
    _, _, dlp, dh = jvp_response_stats(
        model, batch, direction, params=params, temperature=temperature, micro_batch_size=micro_batch_size
    )
    c = coef_logp.detach().to(device=dlp.device, dtype=dlp.dtype) * dlp
    if coef_entropy is not None:
        c = c + coef_entropy.detach().to(device=dh.device, dtype=dh.dtype) * dh
    return torch.where(mask.to(c.device), c, torch.zeros((), dtype=c.dtype, device=c.device))
