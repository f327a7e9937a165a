"""`train(config, exp_name)`: the whole run, from the dataset directory to serving-ready checkpoints.

Run directory `<checkpoint_dir>/<config>/<exp_name>/`: step directories (see `training.checkpoints`),
`metrics.jsonl`, `tensorboard/` (see `training.tracking`), `loss_curve.png`, `train_config.json`, and the
tokenizers the run made for itself
(`tokenizer.model` when the config names none, `fast_tokenizer/` when FAST is on and none is given), which a
resumed run reuses so every token id stays the same.

Determinism: the batch of step s is fixed by (seed, s) (`training.loader`), the flow noise and time by
fold_in(seed, s), so a run killed after checkpoint N and resumed produces the same losses from step N on as
one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time

import jax
import numpy as np
from flax import nnx

from policy.checkpoint import abstract_model, flatten
from policy.errors import UserFacingError
from policy.fast import SKIP_TOKENS, FastTokenizer
from policy.model_dir import ServingDefaults
from policy.normalize import normalize
from policy.prompts import actor_text, clean_instruction, planner_text, reasoning_tokens
from policy.tokenizer import TextTokenizer, train_tokenizer
from training import distributed, sharding
from training.checkpoints import Checkpoints, resolve_params_dir
from training.config import TrainConfig
from training.data import open_dataset
from training.filters import split_trainable
from training.lerobot import LeRobotDataset
from training.loader import BatchLoader
from training.losses import LossConfig
from training.metrics import Progress, plot_losses
from training.mixture import DatasetMixture
from training.norm_stats import read_norm_stats
from training.reasoning import ReasoningSampler, load_annotations
from training.samples import SampleMaker, clip_for_fast
from training.state import init_state, make_train_step, split
from training.tracking import Tracker
from training.validation import Validator
from training.weights import initial_params, number_line_symbols

logger = logging.getLogger(__name__)

LOSS_CURVE_FILE = "loss_curve.png"
RUN_TOKENIZER = "tokenizer.model"
RUN_FAST_TOKENIZER = "fast_tokenizer"
FAST_FIT_MAX_CHUNKS = 20_000


class RunExistsError(UserFacingError):
    """The run directory holds an earlier run and neither --resume nor --overwrite was given."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_dir: pathlib.Path
    last_step: int
    last_checkpoint: pathlib.Path
    records: list[dict]


def run_dir(config: TrainConfig, exp_name: str) -> pathlib.Path:
    return pathlib.Path(config.checkpoint_dir).expanduser().resolve() / config.name / exp_name


def train(
    config: TrainConfig,
    exp_name: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    if resume and overwrite:
        raise UserFacingError("give --resume or --overwrite, not both")
    directory = run_dir(config, exp_name)
    if directory.exists() and any(directory.iterdir()) and not resume and not overwrite:
        raise RunExistsError(f"{directory} holds an earlier run; pass --resume to continue it or --overwrite")
    distributed.barrier("run-directory-checked")  # before process 0 writes there
    dataset = open_dataset(config)
    val_dataset = loader = checkpoints = None
    try:
        val_dataset = open_dataset(config, "val")
        if config.data.frame_cache:
            for frames in (dataset, val_dataset):
                if frames is not None:
                    _primary_first("frame-cache", lambda f=frames: f.use_frame_cache(progress=progress))
        norm_stats = read_norm_stats(config)
        if distributed.is_primary():
            if overwrite and directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
        reasoning = _reasoning(config)
        tokenizer = _primary_first("tokenizer", lambda: _text_tokenizer(config, dataset, directory, reasoning))
        fast = None
        if config.fast_loss_weight > 0:
            fast = _primary_first("fast-tokenizer", lambda: _fast_tokenizer(config, dataset, norm_stats, directory))
        maker = SampleMaker(config.model, config.data, tokenizer, norm_stats, fast, config.text_len, reasoning)
        loader = BatchLoader(
            dataset,
            maker,
            config.batch_size,
            seed=config.seed,
            num_workers=config.data.num_workers,
            share=distributed.local_rows(config.batch_size),
        )
        val_maker = None
        if val_dataset is not None:
            val_data = dataclasses.replace(config.data, augment=False)
            val_maker = SampleMaker(config.model, val_data, tokenizer, norm_stats, fast, config.text_len, reasoning)
        checkpoints = Checkpoints(directory, max_to_keep=config.max_to_keep, keep_period=config.keep_period)
        return _run(
            config,
            directory,
            dataset,
            (val_dataset, val_maker),
            tokenizer,
            norm_stats,
            loader,
            checkpoints,
            resume,
            progress,
        )
    finally:
        if checkpoints is not None:
            checkpoints.close()
        if loader is not None:
            loader.close()
        dataset.close()
        if val_dataset is not None:
            val_dataset.close()


def _run(
    config, directory, dataset, validation, tokenizer, norm_stats, loader, checkpoints, resume, progress
) -> RunResult:
    model_cfg = config.model
    mesh = sharding.make_mesh(config.fsdp_devices)
    if config.batch_size % mesh.size:
        raise UserFacingError(f"batch_size {config.batch_size} must be a multiple of the {mesh.size} devices")
    schedule = config.lr.create()
    tx = config.optimizer.create(schedule)
    graphdef = nnx.split(abstract_model(model_cfg))[0]

    latest = checkpoints.latest_step() if resume else None
    init_from = _init_path(config, directory.name) if latest is None else None
    params = initial_params(model_cfg, config.seed, init_from)
    if latest is None and init_from is None:
        params, lines = number_line_symbols(params, tokenizer.pieces(), config.seed)
        if lines:
            logger.info("numbered symbols %s start as number lines", ", ".join(f"<{n}…>" for n in lines))
    trainable_paths, _ = split_trainable(flatten(params), config.trainable, config.frozen)
    if not trainable_paths:
        raise UserFacingError(
            f"config {config.name} trains no parameter (trainable={config.trainable!r}, frozen={config.frozen!r})"
        )
    trainable, frozen = split(params, set(trainable_paths))
    use_ema = config.ema_decay is not None
    shapes = jax.eval_shape(lambda t, f: init_state(t, f, tx, use_ema), trainable, frozen)
    state_sharding = sharding.fsdp_sharding(shapes, mesh, config.fsdp_min_mb)
    if config.fsdp_devices > 1:
        split_arrays = sum(any(a is not None for a in s.spec) for s in jax.tree.leaves(state_sharding.trainable))
        logger.info(
            "FSDP: %d of %d trainable arrays split over %d devices",
            split_arrays,
            len(jax.tree.leaves(state_sharding.trainable)),
            config.fsdp_devices,
        )
    state = jax.jit(lambda t, f: init_state(t, f, tx, use_ema), out_shardings=state_sharding)(trainable, frozen)
    del params, trainable, frozen

    start = 0
    if latest is not None:
        state = checkpoints.restore(latest, state)
        start = int(jax.device_get(state.step))
        logger.info("resumed %s at step %d", directory, start)

    loss_cfg = LossConfig(
        subtask_weight=config.subtask_loss_weight,
        fast_weight=config.fast_loss_weight,
        flow_weight=config.flow_loss_weight,
        knowledge_insulation=config.knowledge_insulation,
        real_action_dim=dataset.action_dim,
    )
    step_fn = make_train_step(graphdef, loss_cfg, tx, schedule, config.ema_decay, jax.random.key(config.seed))
    batch_sharding = sharding.data_sharding(mesh)
    val_dataset, val_maker = validation
    validator = None
    if val_dataset is not None:
        validator = Validator(
            val_dataset,
            val_maker,
            config.batch_size,
            config.val_batches,
            graphdef,
            loss_cfg,
            config.seed,
            batch_sharding,
        )
    jitted = jax.jit(
        step_fn,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    save_kwargs = {
        "model_config": model_cfg,
        "tokenizer_path": tokenizer.path,
        "norm_stats": norm_stats,
        "asset_id": config.data.asset_id,
        "serving": None if config.serve_noise_scale is None else ServingDefaults(config.serve_noise_scale),
    }

    end = config.num_train_steps
    primary = distributed.is_primary()
    tracker = None
    if primary:
        tracker = Tracker(
            directory,
            start_step=start,
            tensorboard=config.tensorboard,
            wandb_project=config.wandb_project,
            wandb_mode=config.wandb_mode,
            run_name=f"{config.name}/{directory.name}",
            run_config=config.to_dict(),
        )
    bar = Progress(end, start, enabled=progress and primary)
    last_checkpoint = checkpoints.step_dir(start) if latest is not None else None
    interval_start, interval = time.perf_counter(), []
    try:
        for step, batch in loader.iterate(start, end):
            state, metrics = jitted(state, distributed.from_local(batch, batch_sharding))
            interval.append(metrics)
            done = step + 1
            saving = done % config.save_interval == 0 or done == end
            if step == 0 or done % config.log_interval == 0 or saving:
                means = _mean(jax.device_get(interval))  # waits for the steps, which jax dispatches ahead
                step_time = (time.perf_counter() - interval_start) / len(interval)
                record = {"step": step, **means, "step_time_s": step_time}
                if saving and validator is not None:
                    record.update(validator(state))
                interval_start, interval = time.perf_counter(), []
                if tracker is not None:
                    tracker.log(record)
                bar.update(done, f"loss {record['loss']:.4f}")
            else:
                bar.update(done)
            if saving:
                last_checkpoint = checkpoints.save(done, state, **save_kwargs)
                if tracker is not None:
                    plot_losses(tracker.records(), directory / LOSS_CURVE_FILE)
    finally:
        bar.close()
        if tracker is not None:
            tracker.close()
    if last_checkpoint is None:
        raise UserFacingError(f"nothing to train: the run is already at step {start} of {end}")
    records = tracker.records() if tracker is not None else []
    return RunResult(directory, max(start, end), last_checkpoint, records)


def _primary_first(name: str, make):
    """`make()` on process 0 first (it may write files), then on the others (which find them written)."""
    result = make() if distributed.is_primary() else None
    distributed.barrier(name)
    return result if distributed.is_primary() else make()


def _mean(metrics: list[dict]) -> dict[str, float]:
    return {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0]}


def _init_path(config: TrainConfig, exp_name: str) -> str | None:
    if config.init_from is None:
        return None
    return config.init_from.replace("{exp_name}", exp_name).replace("{checkpoint_dir}", config.checkpoint_dir)


def _init_tokenizer(config: TrainConfig, exp_name: str) -> pathlib.Path | None:
    """The tokenizer saved beside the checkpoint a run starts from: the ids its embedding rows were trained on."""
    init_from = _init_path(config, exp_name)
    if init_from is None:
        return None
    candidate = resolve_params_dir(init_from).parent / RUN_TOKENIZER
    return candidate if candidate.is_file() else None


def _reasoning(config: TrainConfig) -> ReasoningSampler | None:
    data = config.data
    if data.reasoning_json is None:
        return None
    return ReasoningSampler(load_annotations(data.reasoning_json), data.think_prob, data.outdated_prob)


def _text_tokenizer(
    config: TrainConfig,
    dataset: LeRobotDataset | DatasetMixture,
    directory: pathlib.Path,
    reasoning: ReasoningSampler | None,
) -> TextTokenizer:
    if config.tokenizer is not None:
        return TextTokenizer(config.tokenizer)
    path = directory / RUN_TOKENIZER
    inherited = _init_tokenizer(config, directory.name)
    if not path.is_file() and inherited is not None:
        logger.info("using the tokenizer of %s, whose weights this run starts from", inherited.parent)
        shutil.copyfile(inherited, path)
    if not path.is_file():
        corpus = _prompt_corpus(dataset)
        if reasoning is not None:
            segments = [s for episode in reasoning.annotations.values() for s in episode]
            corpus += [text for s in segments for text in (s.content, s.reasoning)]
        train_tokenizer(path, vocab_size=config.tokenizer_vocab_size, extra_text=corpus)
    tokenizer = TextTokenizer(path)
    top = SKIP_TOKENS + (config.fast_vocab_size if config.fast_loss_weight > 0 else 0)
    if reasoning is not None:
        top = max(top, config.model.vocab_size - min(reasoning_tokens(config.model.vocab_size)))
    if config.model.state_tokens:
        if config.fast_loss_weight > 0 or reasoning is not None:
            raise UserFacingError(
                "state_tokens reserve the top of the vocabulary, where FAST and the reasoning "
                "protocol keep their ids; use the text state (discrete_state_input) with those"
            )
        top = max(top, config.model.vocab_size - config.model.state_token_offset)
    free = config.model.vocab_size - top
    if tokenizer.vocab_size > free:
        raise UserFacingError(
            f"the run's tokenizer has {tokenizer.vocab_size} pieces but only {free} ids of the model's "
            f"{config.model.vocab_size}-token vocabulary are free of FAST, protocol and state tokens; "
            "lower tokenizer_vocab_size"
        )
    return tokenizer


def _prompt_corpus(dataset: LeRobotDataset | DatasetMixture) -> list[str]:
    """The dataset's strings in every layout the planner and actor build, so their pieces exist."""
    texts = dataset.texts()
    lines = [*texts, *(clean_instruction(t) for t in texts)]
    for task in texts:
        lines.append(planner_text(task))
        lines.extend(actor_text(task, subtask) for subtask in texts[:50])
    return lines


def _fast_tokenizer(
    config, dataset: LeRobotDataset | DatasetMixture, norm_stats, directory: pathlib.Path
) -> FastTokenizer:
    if config.fast_tokenizer is not None:
        return FastTokenizer.load(config.fast_tokenizer)
    path = directory / RUN_FAST_TOKENIZER
    if path.is_dir():
        return FastTokenizer.load(path)
    rows = np.arange(len(dataset))
    if len(rows) > FAST_FIT_MAX_CHUNKS:
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, FAST_FIT_MAX_CHUNKS, replace=False))
    chunks, _ = dataset.action_chunks(rows)
    normalized = normalize(chunks, norm_stats["actions"], use_quantiles=config.model.use_quantiles)
    fast = FastTokenizer.fit(
        list(clip_for_fast(normalized)), scale=config.fast_scale, vocab_size=config.fast_vocab_size
    )
    fast.save(path)
    return fast
