"""The training losses of pi0.5 with subtask prediction, each read off the pass the runtime itself runs.

- subtask CE: next-token cross-entropy on the subtask tokens and their EOS, from one pass over the text row
  (images + planner prompt + subtask (+ FAST)), the prefix pass the planner runs before decoding;
- FAST CE: the same on the FAST segment of that row;
- flow MSE: the actor row goes through `fill_prefix` and the action expert through `velocity_from_cache`,
  the two calls of the actor's sampler; ‖v(x_t, t) − (noise − actions)‖² over the real action dims and the
  action steps inside the episode.

Knowledge insulation stops the gradient at the prefix KV cache the action expert reads, so the flow loss
trains the expert and its projections only and the VLM learns from the text losses alone.

Token losses average over all loss tokens of the batch; the flow loss over all valid (step, dim) entries.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from policy.gemma import KVCache
from policy.pi05 import Pi05
from training.samples import TrainBatch


@dataclasses.dataclass(frozen=True)
class LossConfig:
    subtask_weight: float = 1.0
    fast_weight: float = 0.0
    flow_weight: float = 1.0
    knowledge_insulation: bool = True
    real_action_dim: int | None = None  # dims of the dataset's actions; None = all of the model's

    @property
    def text_pass(self) -> bool:
        return self.subtask_weight > 0 or self.fast_weight > 0


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def text_logits(model: Pi05, batch: TrainBatch) -> jax.Array:
    """[B,L-1,V]: the prediction of text token i+1 from the prefix pass over the text row."""
    hidden, _, _ = model.fill_prefix(batch.text_input())
    length = batch.text_tokens.shape[1]
    return model.logits(hidden[:, -length:-1]).astype(jnp.float32)


def token_nll(model: Pi05, batch: TrainBatch) -> jax.Array:
    """[B,L]: −log p(token i | tokens < i, images) for i ≥ 1 (column 0, the BOS, is 0)."""
    logits = text_logits(model, batch)
    targets = batch.text_tokens[:, 1:]
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - picked
    return jnp.pad(nll, ((0, 0), (1, 0)))


def flow_mse(model: Pi05, rng: jax.Array, batch: TrainBatch, cfg: LossConfig) -> jax.Array:
    _, cache, prefix_mask = model.fill_prefix(batch.actor_input())
    if cfg.knowledge_insulation:
        cache = jax.tree.map(jax.lax.stop_gradient, cache)
    return flow_mse_from_cache(model, rng, batch, cache, prefix_mask, cfg)


def flow_mse_from_cache(
    model: Pi05, rng: jax.Array, batch: TrainBatch, cache: KVCache, prefix_mask: jax.Array, cfg: LossConfig
) -> jax.Array:
    """The flow loss of the action expert reading a filled actor-row cache (the actor's denoising call)."""
    obs = batch.actor_input()
    actions = batch.actions
    noise_rng, time_rng = jax.random.split(rng)
    noise = jax.random.normal(noise_rng, actions.shape)
    t = jax.random.beta(time_rng, 1.5, 1.0, actions.shape[:1]) * 0.999 + 0.001
    x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
    v_t = model.velocity_from_cache(obs, cache, prefix_mask, x_t, t)
    dims = cfg.real_action_dim or actions.shape[-1]
    error = jnp.square(v_t[..., :dims].astype(jnp.float32) - (noise - actions)[..., :dims])
    valid = (~batch.action_is_pad & batch.flow_mask[:, None])[..., None]
    valid = jnp.broadcast_to(valid, error.shape)
    return masked_mean(error, valid)


def compute_losses(
    model: Pi05, rng: jax.Array, batch: TrainBatch, cfg: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(weighted total, {term: value}); passes whose weight is 0 are not run."""
    terms: dict[str, jax.Array] = {}
    total = jnp.float32(0.0)
    if cfg.text_pass:
        nll = token_nll(model, batch)
        if cfg.subtask_weight > 0:
            terms["subtask_ce"] = masked_mean(nll, batch.subtask_loss_mask)
            total += cfg.subtask_weight * terms["subtask_ce"]
        if cfg.fast_weight > 0:
            terms["fast_ce"] = masked_mean(nll, batch.fast_loss_mask)
            total += cfg.fast_weight * terms["fast_ce"]
    if cfg.flow_weight > 0:
        terms["flow_mse"] = flow_mse(model, rng, batch, cfg)
        total += cfg.flow_weight * terms["flow_mse"]
    return total, terms


def subtask_exact_match(model: Pi05, batch: TrainBatch) -> tuple[jax.Array, jax.Array]:
    """(rows whose subtask greedy decoding reproduces exactly, rows with a subtask target).

    Greedy decoding emits the label (and its EOS) exactly when every label token is the argmax given the
    label's own prefix, so one teacher-forced pass measures the planner's exact match without decoding.
    """
    predicted = jnp.argmax(text_logits(model, batch), axis=-1)
    target_mask = batch.subtask_loss_mask[:, 1:]
    correct = (predicted == batch.text_tokens[:, 1:]) | ~target_mask
    labelled = jnp.any(target_mask, axis=1)
    return jnp.sum(jnp.all(correct, axis=1) & labelled), jnp.sum(labelled)
