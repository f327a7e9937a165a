"""The pi0.5 network (and pi0 with `pi05=False`): one function for the planner, the actor and training.

Sequence layout: prefix = image tokens of every camera + prompt tokens (bidirectional among valid tokens),
suffix = H action tokens (a causal block after the prefix; the prefix never sees it). In pi0.5 the flow time
enters the action expert through adaRMSNorm; in pi0 through an action-time MLP plus a state token.

Shapes are jaxtyping annotations (documentation only, not checked at run time); the axis names (b batch, p prefix
tokens, s cache slots, t action horizon, a action dims, d width, v vocabulary, ...) are listed in
`policy.observation`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Bool, Float, Int

from policy import masks
from policy.config import ModelConfig
from policy.gemma import Dense, KVCache, MixtureTransformer
from policy.observation import ModelInput
from policy.siglip import SigLIP

TIME_MIN_PERIOD = 4e-3
TIME_MAX_PERIOD = 4.0


def posemb_sincos(
    t: Float[jax.Array, " b"], width: int, min_period: float, max_period: float
) -> Float[jax.Array, "b width"]:
    """Sin-cos embedding of scalars t, periods geometric between min and max."""
    if width % 2:
        raise ValueError(f"time embedding width must be even, got {width}")
    fraction = jnp.linspace(0.0, 1.0, width // 2)
    period = min_period * (max_period / min_period) ** fraction
    angle = jnp.einsum("i,j->ij", t, 1.0 / period * 2 * jnp.pi, precision=jax.lax.Precision.HIGHEST)
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def state_token_ids(state: Float[jax.Array, "b a"], cfg: ModelConfig) -> Int[jax.Array, "b a"]:
    """Normalized state → reserved token ids: dimension i, bin j ↦ offset + i·bins + j.

    The bins cut [-1, 1] evenly as openpi's text state does; values outside go to the end bins."""
    bins = cfg.state_tokens
    edges = jnp.linspace(-1.0, 1.0, bins + 1)[1:-1]
    bin_ids = jnp.clip(jnp.searchsorted(edges, state.astype(jnp.float32), side="right"), 0, bins - 1)
    dims = jnp.arange(state.shape[-1], dtype=jnp.int32) * bins
    return (cfg.state_token_offset + dims + bin_ids).astype(jnp.int32)


def number_line_rows(bins: int, axes: int, width: int, key: jax.Array) -> Float[jax.Array, "n width"]:
    """Embedding rows [axes·bins, D] for tokens that name bins of a number: a sin-cos code of the bin's centre
    in [-1, 1] plus a random code of its axis, so that neighbouring bins start out alike and a model trained
    from scratch reads (and, through the tied output layer, writes) a number line instead of unrelated ids."""
    centres = jnp.linspace(-1.0, 1.0, 2 * bins + 1)[1::2]
    value_code = posemb_sincos(centres, width, 8.0 / bins, 8.0)  # periods from 4 bins to 4× the range
    axis_code = jax.random.normal(key, (axes, width))
    rows = value_code[None, :, :] + axis_code[:, None, :]
    return (rows / jnp.std(rows)).reshape(axes * bins, width)


def smooth_state_embeddings(cfg: ModelConfig, key: jax.Array) -> jax.Array:
    """Initial rows [C·bins, D] for the state tokens: one number line per state dimension."""
    return number_line_rows(cfg.state_tokens, cfg.action_dim, cfg.paligemma.width, key)


# (x_t [b,t,a], t scalar) → v [b,t,a]
Velocity = Callable[[jax.Array, jax.Array], jax.Array]
# (x_t ↦ v at this t, x_t, t) → the velocity the step takes instead, e.g. the actor's RTC guidance
Guide = Callable[[Callable[[jax.Array], jax.Array], jax.Array, jax.Array], jax.Array]


def euler_integrate(
    velocity: Velocity, noise: Float[jax.Array, "b t a"], num_steps: int, guide: Guide | None = None
) -> Float[jax.Array, "b t a"]:
    """x_0 from x_1 = noise in `num_steps` Euler steps of dt = -1/num_steps, openpi's `sample_actions` loop.

    The one copy of the loop: the network's `sample_actions`, the actor's sampler (with `guide`) and the
    benches integrate with it. It is one `fori_loop`, so inside jit no step returns to the host."""
    dt = -1.0 / num_steps

    def step(_: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x_t, t = carry
        v_t = velocity(x_t, t) if guide is None else guide(lambda x: velocity(x, t), x_t, t)
        return x_t + dt * v_t, t + dt

    x_0, _ = jax.lax.fori_loop(0, num_steps, step, (noise.astype(jnp.float32), jnp.float32(1.0)))
    return x_0


def prompt_mean(
    text: Float[jax.Array, "b l d"], token_mask: Bool[jax.Array, "b l"], token_ar_mask: jax.Array | None
) -> Float[jax.Array, "b d"]:
    """The mean embedding of the prompt: the valid tokens before the first causal block (an answer being
    trained on comes after it and must not leak into what conditions the images)."""
    prompt = token_mask.astype(jnp.bool_)
    if token_ar_mask is not None:
        prompt &= jnp.cumsum(token_ar_mask.astype(jnp.int32), axis=1) == 0
    weights = prompt.astype(jnp.float32)[..., None]
    return (text.astype(jnp.float32) * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


class PaliGemma(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        experts = [cfg.paligemma, cfg.action_expert]
        self.llm = MixtureTransformer(experts, [False, cfg.pi05], cfg.vocab_size, cfg.dtype, rngs=rngs)
        self.img = SigLIP(cfg.vision, cfg.paligemma.width, cfg.dtype, rngs=rngs)


class Pi05(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        width = cfg.action_expert.width
        self.PaliGemma = PaliGemma(cfg, rngs=rngs)
        if cfg.state_tokens:
            table = self.PaliGemma.llm.embedder.input_embedding
            rows = smooth_state_embeddings(cfg, rngs.params()).astype(table[...].dtype)
            table[...] = table[...].at[cfg.state_token_offset :].set(rows)
        self.action_in_proj = Dense(cfg.action_dim, width, rngs=rngs)
        if cfg.pi05:
            self.time_mlp_in = Dense(width, width, rngs=rngs)
            self.time_mlp_out = Dense(width, width, rngs=rngs)
        else:
            self.state_proj = Dense(cfg.action_dim, width, rngs=rngs)
            self.action_time_mlp_in = Dense(2 * width, width, rngs=rngs)
            self.action_time_mlp_out = Dense(width, width, rngs=rngs)
        self.action_out_proj = Dense(width, cfg.action_dim, rngs=rngs)

    # -- prefix ------------------------------------------------------------------------------------------------

    def embed_prefix(
        self, obs: ModelInput
    ) -> tuple[Float[jax.Array, "b p d"], Bool[jax.Array, "b p"], Bool[jax.Array, "b p"]]:
        """Prefix embeddings, input mask and ar mask."""
        tokens, input_mask, ar_mask = [], [], []
        batch = obs.batch_size
        text = self.PaliGemma.llm.embed(obs.tokens)
        words = prompt_mean(text, obs.token_mask, obs.token_ar_mask) if self.cfg.vision.film else None
        for name in self.cfg.image_keys:
            if name not in obs.images:
                raise ValueError(f"missing image {name!r}; the model expects {list(self.cfg.image_keys)}")
            image_tokens = self.PaliGemma.img(obs.images[name], words)
            n = image_tokens.shape[1]
            tokens.append(image_tokens)
            input_mask.append(jnp.broadcast_to(obs.image_masks[name][:, None], (batch, n)))
            ar_mask.append(jnp.zeros((batch, n), jnp.bool_))
        if self.cfg.state_tokens:
            if obs.state is None:
                raise ValueError("this model reads the state as tokens (state_tokens); the model input has none")
            tokens.append(self.PaliGemma.llm.embed(state_token_ids(obs.state, self.cfg)))
            input_mask.append(jnp.ones((batch, self.cfg.action_dim), jnp.bool_))
            ar_mask.append(jnp.zeros((batch, self.cfg.action_dim), jnp.bool_))
        tokens.append(text)
        input_mask.append(obs.token_mask.astype(jnp.bool_))
        text_ar = jnp.zeros_like(obs.token_mask, jnp.bool_) if obs.token_ar_mask is None else obs.token_ar_mask
        ar_mask.append(text_ar.astype(jnp.bool_))
        embedded = jnp.concatenate([t.astype(self.cfg.dtype) for t in tokens], axis=1)
        return embedded, jnp.concatenate(input_mask, axis=1), jnp.concatenate(ar_mask, axis=1)

    def fill_prefix(self, obs: ModelInput) -> tuple[Float[jax.Array, "b p d"], KVCache, Bool[jax.Array, "b p"]]:
        """One pass over the prefix: its final hidden states, its KV cache, and its input mask."""
        embedded, input_mask, ar_mask = self.embed_prefix(obs)
        attn = masks.make_attn_mask(input_mask, ar_mask)
        positions = masks.positions_from_mask(input_mask)
        (hidden, _), cache = self.PaliGemma.llm([embedded, None], positions, attn)
        assert hidden is not None  # an expert with tokens in has hidden states out
        return hidden, cache, input_mask

    # -- language head -----------------------------------------------------------------------------------------

    def logits(self, hidden: Float[jax.Array, "*b d"]) -> Float[jax.Array, "*b v"]:
        """Next-token logits from final hidden states of the language expert (tied to the input embedding)."""
        return self.PaliGemma.llm.logits(hidden)

    def decode_step(
        self,
        token: Int[jax.Array, " b"],
        position: Int[jax.Array, " b"],
        cache: KVCache,
        write_index: Int[jax.Array, ""],
        key_mask: Bool[jax.Array, "b s"],
    ) -> tuple[Float[jax.Array, "b v"], KVCache]:
        """Feeds one token per row at `position`, writing its keys at buffer slot `write_index`.

        key_mask says which buffer slots (the new one included) the token attends to. Returns the logits of the
        next token and the updated buffer.
        """
        embedded = self.PaliGemma.llm.embed(token[:, None])
        (hidden, _), cache = self.PaliGemma.llm(
            [embedded, None], position[:, None], key_mask[:, None, :], cache=cache, cache_index=write_index
        )
        assert hidden is not None  # an expert with tokens in has hidden states out
        return self.logits(hidden[:, 0]), cache

    # -- action suffix -----------------------------------------------------------------------------------------

    def embed_suffix(
        self, obs: ModelInput, x_t: Float[jax.Array, "b t a"], t: Float[jax.Array, " b"]
    ) -> tuple[
        Float[jax.Array, "b suffix d"],
        Bool[jax.Array, "b suffix"],
        Bool[jax.Array, "b suffix"],
        Float[jax.Array, "b d"] | None,
    ]:
        """Suffix embeddings, input mask, ar mask and the adaRMS condition (pi0.5) or None (pi0).

        The suffix is the t action tokens (pi0.5), or a state token and then them (pi0)."""
        batch, horizon = x_t.shape[:2]
        action_tokens = self.action_in_proj(x_t)
        time_emb = posemb_sincos(t, action_tokens.shape[-1], TIME_MIN_PERIOD, TIME_MAX_PERIOD)
        ar = [jnp.ones((batch, 1), jnp.bool_), jnp.zeros((batch, horizon - 1), jnp.bool_)]
        if self.cfg.pi05:
            cond = nnx.swish(self.time_mlp_out(nnx.swish(self.time_mlp_in(time_emb))))
            tokens, cond_out = action_tokens, cond
        else:
            if obs.state is None:
                raise ValueError("pi0 needs the state in the model input")
            time_tokens = jnp.broadcast_to(time_emb[:, None, :], action_tokens.shape)
            mixed = self.action_time_mlp_in(jnp.concatenate([action_tokens, time_tokens], axis=-1))
            mixed = self.action_time_mlp_out(nnx.swish(mixed))
            state_token = self.state_proj(obs.state)[:, None, :]
            tokens, cond_out = jnp.concatenate([state_token, mixed], axis=1), None
            ar = [jnp.ones((batch, 1), jnp.bool_), *ar]
        input_mask = jnp.ones(tokens.shape[:2], jnp.bool_)
        return tokens, input_mask, jnp.concatenate(ar, axis=1), cond_out

    def _action_velocity(self, suffix_out: Float[jax.Array, "b suffix d"]) -> Float[jax.Array, "b t a"]:
        return self.action_out_proj(suffix_out[:, -self.cfg.action_horizon :])

    def velocity(
        self, obs: ModelInput, x_t: Float[jax.Array, "b t a"], t: Float[jax.Array, " b"]
    ) -> Float[jax.Array, "b t a"]:
        """v(x_t, t) from one joint pass over prefix + suffix (the training forward)."""
        prefix, prefix_mask, prefix_ar = self.embed_prefix(obs)
        suffix, suffix_mask, suffix_ar, cond = self.embed_suffix(obs, x_t, t)
        input_mask = jnp.concatenate([prefix_mask, suffix_mask], axis=1)
        attn = masks.make_attn_mask(input_mask, jnp.concatenate([prefix_ar, suffix_ar], axis=1))
        positions = masks.positions_from_mask(input_mask)
        (_, suffix_out), _ = self.PaliGemma.llm([prefix, suffix], positions, attn, conds=[None, cond])
        assert suffix_out is not None  # an expert with tokens in has hidden states out
        return self._action_velocity(suffix_out)

    def velocity_from_cache(
        self,
        obs: ModelInput,
        cache: KVCache,
        prefix_mask: Bool[jax.Array, "b p"],
        x_t: Float[jax.Array, "b t a"],
        t: Float[jax.Array, " b"],
    ) -> Float[jax.Array, "b t a"]:
        """v(x_t, t) running only the action expert against a filled prefix cache."""
        suffix, suffix_mask, suffix_ar, cond = self.embed_suffix(obs, x_t, t)
        suffix_len = suffix.shape[1]
        attn = jnp.concatenate(
            [masks.cross_mask(suffix_len, prefix_mask), masks.make_attn_mask(suffix_mask, suffix_ar)], axis=-1
        )
        offset = jnp.sum(prefix_mask, axis=-1, dtype=jnp.int32)[:, None]
        positions = masks.positions_from_mask(suffix_mask, offset)
        (_, suffix_out), _ = self.PaliGemma.llm([None, suffix], positions, attn, conds=[None, cond], cache=cache)
        assert suffix_out is not None  # an expert with tokens in has hidden states out
        return self._action_velocity(suffix_out)

    def denoise(
        self,
        obs: ModelInput,
        cache: KVCache,
        prefix_mask: Bool[jax.Array, "b p"],
        noise: Float[jax.Array, "b t a"],
        *,
        num_steps: int = 10,
        guide: Guide | None = None,
    ) -> Float[jax.Array, "b t a"]:
        """The Euler integration (`euler_integrate`) with the action expert against a filled prefix cache."""
        batch = noise.shape[0]

        def velocity(x_t: jax.Array, t: jax.Array) -> jax.Array:
            return self.velocity_from_cache(obs, cache, prefix_mask, x_t, jnp.broadcast_to(t, (batch,)))

        return euler_integrate(velocity, noise, num_steps, guide)

    def sample_actions(
        self,
        obs: ModelInput,
        noise: Float[jax.Array, "b t a"] | None = None,
        *,
        rng: jax.Array | None = None,
        num_steps: int = 10,
    ) -> Float[jax.Array, "b t a"]:
        """Euler integration of the flow from t=1 (noise) to t=0, the prefix cached once (normalized actions)."""
        if noise is None:
            if rng is None:
                raise ValueError("sample_actions needs either noise or rng")
            noise = jax.random.normal(rng, (obs.batch_size, self.cfg.action_horizon, self.cfg.action_dim))
        _, cache, prefix_mask = self.fill_prefix(obs)
        return self.denoise(obs, cache, prefix_mask, noise, num_steps=num_steps)

    # -- training ----------------------------------------------------------------------------------------------

    def compute_loss(
        self, rng: jax.Array, obs: ModelInput, actions: Float[jax.Array, "b t a"]
    ) -> Float[jax.Array, "b t"]:
        """Flow-matching loss per action step: ‖v(x_t,t) − (noise − actions)‖² averaged over action dims."""
        noise_rng, time_rng = jax.random.split(rng)
        noise = jax.random.normal(noise_rng, actions.shape)
        t = jax.random.beta(time_rng, 1.5, 1.0, actions.shape[:-2]) * 0.999 + 0.001
        t_b = t[..., None, None]
        x_t = t_b * noise + (1 - t_b) * actions
        v_t = self.velocity(obs, x_t, t)
        return jnp.mean(jnp.square(v_t - (noise - actions)), axis=-1)
