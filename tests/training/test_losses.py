"""Knowledge insulation: with the prefix KV stop-gradiented, the flow loss alone puts exactly zero gradient on
every VLM parameter, while the action expert learns and would otherwise push gradient into that KV."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from policy.checkpoint import abstract_model, flatten, init_params
from training.config import get_config
from training.losses import LossConfig, flow_mse, flow_mse_from_cache
from training.samples import TrainBatch

VLM_PREFIXES = ("PaliGemma/img/", "PaliGemma/llm/embedder/")


def _is_vlm(path: str) -> bool:
    if path.startswith(VLM_PREFIXES):
        return True
    return path.startswith("PaliGemma/llm/") and "_1/" not in path


def _batch(cfg, size: int = 2) -> TrainBatch:
    rng = np.random.default_rng(0)
    s, length, horizon = cfg.vision.image_size, cfg.max_token_len, cfg.action_horizon
    tokens = np.zeros((size, length), np.int32)
    tokens[:, :12] = rng.integers(4, 300, (size, 12))
    mask = tokens > 0
    return TrainBatch(
        images={k: jnp.asarray(rng.integers(0, 256, (size, s, s, 3), dtype=np.uint8)) for k in cfg.image_keys},
        image_masks={k: jnp.ones(size, bool) for k in cfg.image_keys},
        text_tokens=jnp.asarray(tokens),
        text_mask=jnp.asarray(mask),
        text_ar_mask=jnp.zeros((size, length), jnp.int32),
        subtask_loss_mask=jnp.zeros((size, length), bool),
        fast_loss_mask=jnp.zeros((size, length), bool),
        actor_tokens=jnp.asarray(tokens),
        actor_mask=jnp.asarray(mask),
        actor_ar_mask=jnp.zeros((size, length), jnp.int32),
        state=jnp.zeros((size, cfg.action_dim)),
        text_state=jnp.zeros((size, cfg.action_dim)),
        actions=jnp.asarray(rng.normal(size=(size, horizon, cfg.action_dim)), jnp.float32),
        action_is_pad=jnp.zeros((size, horizon), bool),
        flow_mask=jnp.ones(size, bool),
    )


def test_knowledge_insulation_stops_flow_gradients_at_the_vlm():
    cfg = get_config("pi05_subtask_hybrid_tiny").model
    graphdef = nnx.split(abstract_model(cfg))[0]
    noise = np.random.default_rng(1)
    # openpi's init zeroes the adaRMS gates (the expert would ignore the prefix); perturb every weight
    params = jax.tree.map(lambda x: x + 0.02 * noise.normal(size=x.shape).astype(x.dtype), init_params(cfg, seed=0))
    batch = _batch(cfg)
    loss_cfg = LossConfig(0, 0, 1, knowledge_insulation=True)

    def loss(params):
        return flow_mse(nnx.merge(graphdef, params), jax.random.key(0), batch, loss_cfg)

    grads = flatten(jax.jit(jax.grad(loss))(params))
    vlm = [p for p in grads if _is_vlm(p)]
    expert = [p for p in grads if not _is_vlm(p)]
    assert len(vlm) > 20 and any("img" in p for p in vlm) and any("_1/" in p for p in expert)
    for path in vlm:
        assert not np.asarray(grads[path]).any(), path
    for path in ("action_in_proj/kernel", "action_out_proj/kernel", "PaliGemma/llm/layers/mlp_1/linear"):
        assert np.abs(np.asarray(grads[path])).sum() > 0, path

    # Not vacuous: the expert does send gradient into the prefix KV it reads, which insulation cuts.
    model = nnx.merge(graphdef, params)
    _, cache, prefix_mask = jax.jit(lambda p: nnx.merge(graphdef, p).fill_prefix(batch.actor_input()))(params)

    def from_cache(cache):
        return flow_mse_from_cache(model, jax.random.key(0), batch, cache, prefix_mask, loss_cfg)

    into_cache = jax.jit(jax.grad(from_cache))(cache)
    assert np.abs(np.asarray(into_cache.k)).sum() > 0 and np.abs(np.asarray(into_cache.v)).sum() > 0


def test_flow_loss_ignores_padded_steps_and_model_only_dims():
    from training.losses import masked_mean

    values = jnp.arange(6.0).reshape(2, 3)
    assert float(masked_mean(values, jnp.array([[True, False, False], [False, False, True]]))) == 2.5
    assert float(masked_mean(values, jnp.zeros((2, 3), bool))) == 0.0
