"""Dataset frames → training batches: model camera images, the text row and the actor row (layouts in
`policy.prompts`), and normalized, padded state and action chunks.

Every step the runtime takes on an observation is taken here the same way: `resize_with_pad` to the model's
image size, cameras absent from the dataset masked out, the state normalized with the checkpoint's stats
(`policy.inputs.model_state`, as the checkpoint will record: `ModelConfig.use_quantiles`), the prompts built
by the same functions. Only training adds augmentation.
Images stay uint8 until the compiled step converts them, so host-to-device copies are 4x smaller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from policy import fast as fast_lib
from policy.config import ModelConfig
from policy.images import resize_with_pad
from policy.inputs import model_state
from policy.normalize import NormStats, normalize
from policy.observation import ModelInput, uint8_to_model
from policy.prompts import (
    Tokenizer,
    reasoning_tokens,
    tokenize_actor,
    tokenize_reasoning_example,
    tokenize_text_example,
)
from training.augment import augment_image
from training.config import DataConfig
from training.lerobot import Frame
from training.locate import locate_sample
from training.reasoning import ReasoningSampler

FAST_RANGE = 1.0


@dataclasses.dataclass(frozen=True)
class TrainBatch:
    images: dict[str, jax.Array]  # model key → uint8 [B,S,S,3]
    image_masks: dict[str, jax.Array]  # bool [B]
    text_tokens: jax.Array  # int32 [B,L]
    text_mask: jax.Array  # bool [B,L]
    text_ar_mask: jax.Array  # int32 [B,L]
    subtask_loss_mask: jax.Array  # bool [B,L]
    fast_loss_mask: jax.Array  # bool [B,L]
    actor_tokens: jax.Array  # int32 [B,L]
    actor_mask: jax.Array  # bool [B,L]
    actor_ar_mask: jax.Array  # int32 [B,L]; all 0 except in the reasoning protocol's act rows
    state: jax.Array  # float32 [B,action_dim]
    text_state: jax.Array  # float32 [B,action_dim]; the text row's state: zero in localisation questions
    actions: jax.Array  # float32 [B,H,action_dim]
    action_is_pad: jax.Array  # bool [B,H]
    flow_mask: jax.Array  # bool [B]; False for the reasoning protocol's think rows

    @property
    def batch_size(self) -> int:
        return self.text_tokens.shape[0]

    def _images(self) -> dict[str, jax.Array]:
        return {key: uint8_to_model(value) for key, value in self.images.items()}

    def text_input(self) -> ModelInput:
        return ModelInput(
            self._images(), self.image_masks, self.text_tokens, self.text_mask, self.text_state, self.text_ar_mask
        )

    def actor_input(self) -> ModelInput:
        return ModelInput(
            self._images(), self.image_masks, self.actor_tokens, self.actor_mask, self.state, self.actor_ar_mask
        )


jax.tree_util.register_dataclass(
    TrainBatch, data_fields=[f.name for f in dataclasses.fields(TrainBatch)], meta_fields=[]
)


class SampleMaker:
    """One frame → one sample (a dict with TrainBatch's fields, unbatched numpy)."""

    def __init__(
        self,
        model: ModelConfig,
        data: DataConfig,
        tokenizer: Tokenizer,
        norm_stats: Mapping[str, NormStats],
        fast: fast_lib.FastTokenizer | None = None,
        text_len: int | None = None,
        reasoning: ReasoningSampler | None = None,
    ):
        for key in ("state", "actions"):
            if key not in norm_stats:
                raise ValueError(f"norm stats need a {key!r} entry, found {sorted(norm_stats)}")
        self.model = model
        self.data = data
        self.tokenizer = tokenizer
        self.norm_stats = dict(norm_stats)
        self.fast = fast
        self.text_len = text_len or model.max_token_len
        self.reasoning = reasoning
        if not 0.0 <= data.locate_prob <= 1.0:
            raise ValueError(f"data.locate_prob must be in [0, 1], got {data.locate_prob}")
        if data.locate_frames is not None and data.locate_frames < 1:
            raise ValueError(f"data.locate_frames must be >= 1 or None, got {data.locate_frames}")
        if reasoning is not None and self.text_len != model.max_token_len:
            raise ValueError("the reasoning protocol uses one row for text and flow: leave max_text_len unset")
        self.cameras = {model_key: dataset_key for dataset_key, model_key in data.cameras}
        unknown = sorted(set(self.cameras) - set(model.image_keys))
        if unknown:
            raise ValueError(
                f"data.cameras maps onto {unknown}, which the model does not read ({list(model.image_keys)})"
            )

    def __call__(self, frame: Frame, rng: np.random.Generator) -> dict:
        size = self.model.vision.image_size
        images: dict[str, np.ndarray] = {}
        image_masks: dict[str, np.bool_] = {}
        for key in self.model.image_keys:
            dataset_key = self.cameras.get(key)
            if dataset_key is None:
                images[key] = np.zeros((size, size, 3), np.uint8)
                image_masks[key] = np.bool_(False)
                continue
            image = resize_with_pad(frame.images[dataset_key], size, size)
            if self.data.augment:
                image = augment_image(image, rng, geometric=self.data.geometric_augment and "wrist" not in key)
            images[key] = image
            image_masks[key] = np.bool_(True)

        state = model_state(frame.state, self.norm_stats["state"], self.model, self.data.state_key)
        actions = normalize(frame.actions, self.norm_stats["actions"], use_quantiles=self.model.use_quantiles)
        actions = actions.astype(np.float32)
        prompt_state = state if self.model.discrete_state_input else None
        if self.reasoning is not None:
            rows = self._reasoning_rows(frame, rng, prompt_state)
        else:
            rows = self._rows(frame, actions, prompt_state, rng)
        padded_state = _pad_last(state, self.model.action_dim)
        asks = rows.pop("asks_location", False)
        return {
            "images": images,
            "image_masks": image_masks,
            **rows,
            "state": padded_state,
            "text_state": np.zeros_like(padded_state) if asks else padded_state,
            "actions": _pad_last(actions, self.model.action_dim),
            "action_is_pad": np.asarray(frame.action_is_pad, bool),
        }

    def _rows(self, frame: Frame, actions: np.ndarray, state: np.ndarray | None, rng: np.random.Generator) -> dict:
        question = None
        if self._may_ask(frame) and rng.random() < self.data.locate_prob:
            question = locate_sample(frame.scene, rng)
        if question is not None:
            text = tokenize_text_example(self.tokenizer, *question, max_len=self.text_len)
        else:
            fast_ids = None
            if self.fast is not None:
                fast_ids = fast_lib.to_text_ids(self.fast.encode(clip_for_fast(actions)), self.model.vocab_size)
            text = tokenize_text_example(
                self.tokenizer, frame.task, frame.subtask, max_len=self.text_len, state=state, fast_ids=fast_ids
            )
        actor = tokenize_actor(self.tokenizer, frame.task, frame.subtask, max_len=self.model.max_token_len, state=state)
        return {
            "text_tokens": text.tokens,
            "text_mask": text.mask,
            "text_ar_mask": text.ar_mask,
            "subtask_loss_mask": text.subtask_loss_mask,
            "fast_loss_mask": text.fast_loss_mask,
            "actor_tokens": actor.tokens,
            "actor_mask": actor.mask,
            "actor_ar_mask": np.zeros_like(actor.tokens),
            "flow_mask": np.bool_(True),
            "asks_location": question is not None,
        }

    def _may_ask(self, frame: Frame) -> bool:
        early = self.data.locate_frames is None or frame.frame_index < self.data.locate_frames
        return self.data.locate_prob > 0 and early

    def _reasoning_rows(self, frame: Frame, rng: np.random.Generator, state: np.ndarray | None) -> dict:
        assert self.reasoning is not None  # __call__ picks these rows only with a sampler
        choice = self.reasoning.choose(frame.episode_index, frame.frame_index, rng)
        special = reasoning_tokens(self.model.vocab_size)
        row = tokenize_reasoning_example(
            self.tokenizer, choice.context, choice.reasoning, special, max_len=self.text_len, state=state
        )
        return {
            "text_tokens": row.tokens,
            "text_mask": row.mask,
            "text_ar_mask": row.ar_mask,
            "subtask_loss_mask": row.loss_mask,
            "fast_loss_mask": np.zeros_like(row.loss_mask),
            "actor_tokens": row.tokens,
            "actor_mask": row.mask,
            "actor_ar_mask": row.ar_mask,
            "flow_mask": np.bool_(row.acts),
        }


def clip_for_fast(actions: np.ndarray) -> np.ndarray:
    """FAST targets are the normalized actions cut to [-1, 1], the range FAST is made for: a rare action far
    outside its quantiles (a one-off wrist turn) would otherwise spell dozens of multi-byte tokens."""
    return np.clip(actions, -FAST_RANGE, FAST_RANGE)


def _pad_last(x: np.ndarray, dim: int) -> np.ndarray:
    if x.shape[-1] > dim:
        raise ValueError(f"data has {x.shape[-1]} dims, more than the model's action_dim {dim}")
    pad = [(0, 0)] * (x.ndim - 1) + [(0, dim - x.shape[-1])]
    return np.pad(x, pad).astype(np.float32)


def collate(samples: Sequence[dict]) -> TrainBatch:
    """Stacks samples into a TrainBatch of numpy arrays (put on devices by the train loop)."""
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *samples)
    return TrainBatch(**stacked)
