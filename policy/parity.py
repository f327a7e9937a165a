"""Numerical parity against a fixture produced by openpi's own implementation.

A fixture directory holds `meta.json` (the model config), `params/` (an openpi orbax checkpoint) and `io.npz`
(inputs and openpi's outputs: sample_actions for given noise, the one-pass velocity, the logits at the last
valid prefix token, and greedy KV-cached tokens). See shared/fixtures/openpi_pi05_dummy/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from policy import checkpoint, decoding
from policy.config import ModelConfig
from policy.errors import UserFacingError
from policy.gemma import GemmaConfig, gemma_variants, get_gemma_config
from policy.observation import ModelInput, uint8_to_model
from policy.siglip import SiglipConfig, get_siglip_config

TOLERANCE = 1e-4


class FixtureError(UserFacingError):
    pass


def config_from_meta(meta: dict[str, Any]) -> ModelConfig:
    """The ModelConfig described by a fixture's meta.json."""
    model = meta["model"]

    def gemma(variant: str) -> GemmaConfig:
        sizes = model.get(f"gemma_{variant}") or model.get(variant) or {}
        return get_gemma_config(variant, **sizes) if variant in gemma_variants() else GemmaConfig(**sizes)

    vision = model.get("siglip", {})
    if {"width", "depth", "mlp_dim", "num_heads"} <= vision.keys():
        siglip = SiglipConfig(
            vision["width"],
            vision["depth"],
            vision["mlp_dim"],
            vision["num_heads"],
            vision.get("patch", 14),
            vision.get("image_size", 224),
        )
    else:
        siglip = get_siglip_config(vision.get("variant", "So400m/14"), vision.get("image_size", 224))
    return ModelConfig(
        paligemma=gemma(model["paligemma_variant"]),
        action_expert=gemma(model["action_expert_variant"]),
        vision=siglip,
        pi05=model.get("pi05", True),
        action_dim=model["action_dim"],
        action_horizon=model["action_horizon"],
        max_token_len=model["max_token_len"],
        vocab_size=model["vocab_size"],
        dtype=model.get("dtype", "float32"),
        image_keys=tuple(meta.get("image_keys", ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"))),
    )


@dataclasses.dataclass(frozen=True)
class ParityReport:
    errors: dict[str, float]  # output name → max abs error
    token_mismatches: int
    tokens: np.ndarray
    expected_tokens: np.ndarray

    @property
    def ok(self) -> bool:
        return self.token_mismatches == 0 and all(e <= TOLERANCE for e in self.errors.values())

    def lines(self) -> list[str]:
        out = [
            f"{name:16s} max abs error {err:.3e}  {'ok' if err <= TOLERANCE else 'FAIL'}"
            for name, err in self.errors.items()
        ]
        verdict = "ok" if self.token_mismatches == 0 else f"FAIL ({self.token_mismatches} differ)"
        out.append(f"{'greedy_tokens':16s} {self.tokens.shape[1]} tokens/row  {verdict}")
        return out


def _fixture_input(io: Any, cfg: ModelConfig) -> ModelInput:
    images, image_masks = {}, {}
    for key in cfg.image_keys:
        if f"image/{key}" not in io:
            raise FixtureError(f"io.npz has no image/{key}")
        images[key] = uint8_to_model(io[f"image/{key}"])
        image_masks[key] = jnp.asarray(io[f"image_mask/{key}"], jnp.bool_)
    return ModelInput(
        images=images,
        image_masks=image_masks,
        tokens=jnp.asarray(io["tokenized_prompt"], jnp.int32),
        token_mask=jnp.asarray(io["tokenized_prompt_mask"], jnp.bool_),
        state=jnp.asarray(io["state"], jnp.float32) if "state" in io else None,
    )


def check_parity(fixture_dir: str | pathlib.Path) -> ParityReport:
    fixture_dir = pathlib.Path(fixture_dir)
    for name in ("meta.json", "io.npz", "params"):
        if not (fixture_dir / name).exists():
            raise FixtureError(f"{fixture_dir} has no {name}; expected meta.json, io.npz and params/")
    meta = json.loads((fixture_dir / "meta.json").read_text())
    cfg = config_from_meta(meta)
    model = checkpoint.load_model(cfg, fixture_dir / "params", dtype=cfg.dtype)
    io = dict(np.load(fixture_dir / "io.npz"))
    obs = _fixture_input(io, cfg)
    steps = int(meta.get("num_denoise_steps", 10))
    decode_steps = int(io["greedy_tokens"].shape[1])

    @nnx.jit(static_argnums=(2,))
    def sample(m, obs, steps, noise):
        return m.sample_actions(obs, noise, num_steps=steps)

    @nnx.jit
    def velocity(m, obs, x_t, t):
        return m.velocity(obs, x_t, t)

    @nnx.jit(static_argnums=(2,))
    def greedy(m, obs, n):
        first = decoding.prefill(m, obs, n).first_logits
        tokens, _ = decoding.generate(m, obs, n)
        return first, tokens

    actions = sample(model, obs, steps, jnp.asarray(io["noise"]))
    v_t = velocity(model, obs, jnp.asarray(io["x_t"]), jnp.asarray(io["t"]))
    first_logits, tokens = greedy(model, obs, decode_steps)
    errors = {
        "sample_actions": float(np.max(np.abs(np.asarray(actions) - io["sample_actions"]))),
        "v_t": float(np.max(np.abs(np.asarray(v_t) - io["v_t"]))),
        "first_logits": float(np.max(np.abs(np.asarray(first_logits) - io["first_logits"]))),
    }
    tokens = np.asarray(tokens)
    return ParityReport(errors, int(np.sum(tokens != io["greedy_tokens"])), tokens, io["greedy_tokens"])
