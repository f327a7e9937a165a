"""Can the bundled network learn to find a named thing in its cameras? A bare training loop (Adam, no
schedule, no augmentation, a zero state) on localisation questions alone, `locate the blue cylinder` →
`<x05><y34>`, with the `pi05_builtin` network and the bundle's tokenizer, scored on scenes it never trained on.

    .venv/bin/python bench/locate_probe.py [--source reset|dataset] [--scenes 3000] [--steps 1500]
        [--random-symbols] [--blank-images] [--lr 1e-3] [--seed 0] [--set KEY=VALUE ...]

`--source reset` renders the reset pose of new scenes of both built-in tasks (the hand away from every
thing), at the network's image size (`--set model.vision.image_size=128` renders at 128²); `dataset` reads
random recorded frames of `--data` (a `record --locations` dataset: the hand is in the picture, often at the
thing asked about). One scene in ten (by seed, or by episode) is held out. The
symbol rows start as number lines as in a real run (`training.weights.number_line_symbols`), or as random
rows with `--random-symbols`; `--blank-images` gives the control that only the words and the layout prior
can reach. Every 100 steps it prints one JSON line: the held-out loss, the share of held-out answers within
2 bins of the truth on both axes (teacher-forced), the median bin error, and which thing the greedy answer is
nearest, for objects and containers apart, beside the chance of picking the asked object blindly
(`objects_right`, `containers_right`, `objects_chance`); the last line sums the run up. `--set KEY=VALUE`
changes the network (`--set model.vision.keypoints=16`).

Read `objects_right` against `objects_chance`: a scene has one or two containers, of different kinds, and
two or three objects told apart only by colour and shape, so the loss and the bin figures improve a lot by
finding the containers alone.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from policy.checkpoint import init_params, model_from_params
from policy.observation import ModelInput, uint8_to_model
from policy.prompts import tokenize_planner_example
from policy.tokenizer import TextTokenizer, numbered_symbols
from training.config import get_config
from training.locate import locate_sample, scene_entries
from training.weights import number_line_symbols

TEXT_LEN = 48
BATCH = 32
HELD_OUT_SEED = 200_000  # away from the rollouts' (0+) and the bundle recorder's (100000+)


def symbol_numbers(symbols: str) -> tuple[int, int]:
    """`<x05><y34>` → (5, 34)."""
    x, y = re.findall(r"\d+", symbols)[:2]
    return int(x), int(y)


def is_object(thing: str) -> bool:
    from sim.scene import OBJECT_KINDS

    return thing.split()[-1] in OBJECT_KINDS


def score_answers(questions: list[str], scenes: list[str], said: list[tuple[int, int]]) -> dict[str, float]:
    """Answers (x, y bins) scored by which thing of the scene is nearest: the one asked about or another.

    Objects (cubes, cylinders: several in a scene, told apart only by their names) and containers are scored
    apart (`objects_right`, `containers_right`), beside `objects_chance`, the share an answer that picks one of
    the scene's objects blindly would get right."""
    tally: dict[str, list[float]] = {"objects_right": [], "containers_right": [], "objects_chance": []}
    for question, scene, (x, y) in zip(questions, scenes, said, strict=True):
        asked = question.removeprefix("locate the ")
        places = {thing: symbol_numbers(at) for thing, at in scene_entries(scene)}
        nearest = min(places, key=lambda thing: np.hypot(places[thing][0] - x, places[thing][1] - y))
        if is_object(asked):
            tally["objects_right"].append(float(nearest == asked))
            tally["objects_chance"].append(1.0 / sum(map(is_object, places)))
        else:
            tally["containers_right"].append(float(nearest == asked))
    return {name: round(float(np.mean(values)), 3) for name, values in tally.items() if values}


def reset_rows(scenes: int, rng: np.random.Generator, image_size: int = 64) -> list[tuple]:
    from sim.locations import scene_locations
    from sim.tasks import make

    envs = [make(task, seed=0, image_size=image_size) for task in ("pick_place", "two_stage")]
    rows = []
    for k in range(scenes):
        env = envs[k % 2]
        obs = env.reset(seed=HELD_OUT_SEED + k)
        scene = scene_locations(env)
        rows.append((obs["images"]["agentview"], obs["images"]["wrist"], locate_sample(scene, rng), k, scene))
    for env in envs:
        env.close()
    return rows


def dataset_rows(path: str, scenes: int, rng: np.random.Generator) -> list[tuple]:
    from training.data import open_dataset

    dataset = open_dataset(get_config("pi05_builtin", [f"data.path={path}"]))
    dataset.use_frame_cache(progress=False)
    rows = []
    for row in rng.choice(len(dataset), scenes, replace=False):
        frame = dataset.frame(int(row))
        images = frame.images
        question = locate_sample(frame.scene, rng)
        rows.append(
            (
                images["observation.images.agentview"],
                images["observation.images.wrist"],
                question,
                frame.episode_index,
                frame.scene,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("reset", "dataset"), default="reset")
    parser.add_argument("--data", default="data/builtin", help="dataset for --source dataset")
    parser.add_argument("--tokenizer", default="bundles/builtin/tokenizer.model")
    parser.add_argument("--scenes", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--random-symbols", action="store_true")
    parser.add_argument("--blank-images", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the pi05_builtin config, e.g. model.vision.keypoints=16 (repeatable)",
    )
    args = parser.parse_args(argv)
    if not pathlib.Path(args.tokenizer).exists():
        parser.error(f"--tokenizer {args.tokenizer} does not exist")

    rng = np.random.default_rng(args.seed)
    tokenizer = TextTokenizer(args.tokenizer)
    config = get_config("pi05_builtin", args.set).model
    if args.source == "reset":
        raw = reset_rows(args.scenes, rng, config.vision.image_size)
    else:
        raw = dataset_rows(args.data, args.scenes, rng)
        if raw[0][0].shape[0] != config.vision.image_size:
            size = config.vision.image_size
            parser.error(f"{args.data} has {raw[0][0].shape[0]}-pixel frames; the network reads {size}")
    examples = [tokenize_planner_example(tokenizer, *row[2], max_len=TEXT_LEN) for row in raw]
    agent = jnp.stack([uint8_to_model(r[0]) for r in raw])
    wrist = jnp.stack([uint8_to_model(r[1]) for r in raw])
    if args.blank_images:
        agent, wrist = jnp.zeros_like(agent), jnp.zeros_like(wrist)
    tokens = jnp.asarray(np.stack([e.tokens for e in examples]))
    mask = jnp.asarray(np.stack([e.mask for e in examples]))
    ar_mask = jnp.asarray(np.stack([e.ar_mask for e in examples]))
    loss_mask = np.stack([e.loss_mask for e in examples])[:, 1:]
    groups = np.array([r[3] for r in raw])
    held, train = np.flatnonzero(groups % 10 == 0), np.flatnonzero(groups % 10 != 0)

    params = init_params(config, args.seed)
    if not args.random_symbols:
        params, _ = number_line_symbols(params, tokenizer.pieces(), args.seed)
    model = model_from_params(config, params)
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    state = jnp.zeros((len(raw), config.action_dim))
    on = {key: jnp.ones(len(raw), bool) for key in config.image_keys}
    target_mask = jnp.asarray(loss_mask, jnp.float32)

    def logits_of(model, idx):
        obs = ModelInput(
            dict(zip(config.image_keys, (agent[idx], wrist[idx]))),
            {key: value[idx] for key, value in on.items()},
            tokens[idx],
            mask[idx],
            state[idx],
            ar_mask[idx],
        )
        hidden, _, _ = model.fill_prefix(obs)
        return model.logits(hidden[:, -TEXT_LEN:-1]).astype(jnp.float32)

    def loss_fn(model, idx):
        logits = logits_of(model, idx)
        targets = tokens[idx][:, 1:]
        nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
        return (nll * target_mask[idx]).sum() / target_mask[idx].sum()

    @nnx.jit
    def train_step(model, optimizer, idx):
        loss, grads = nnx.value_and_grad(loss_fn)(model, idx)
        optimizer.update(model, grads)
        return loss

    evaluate_loss = nnx.jit(loss_fn)
    predict = nnx.jit(lambda model, idx: jnp.argmax(logits_of(model, idx), -1))
    number = {i: n for family in numbered_symbols(tokenizer.pieces()).values() for n, i in family.items()}

    def bin_errors(idx: np.ndarray) -> np.ndarray:
        said, meant = np.asarray(predict(model, jnp.asarray(idx))), np.asarray(tokens)[idx][:, 1:]
        errors = []
        for s, m, where in zip(said, meant, loss_mask[idx]):
            x, y = np.flatnonzero(where)[:2]
            errors.append(max(abs(number.get(int(s[p]), 99) - number[int(m[p])]) for p in (x, y)))
        return np.array(errors)

    def answered_things(idx: np.ndarray) -> dict[str, float]:
        said = np.asarray(predict(model, jnp.asarray(idx)))
        places = []
        for out, where in zip(said, loss_mask[idx]):
            x, y = (number.get(int(out[p]), -99) for p in np.flatnonzero(where)[:2])
            places.append((x, y))
        return score_answers([raw[row][2][0] for row in idx], [raw[row][4] for row in idx], places)

    evaluation = jnp.asarray(held[:256])
    history = []
    for step in range(args.steps + 1):
        train_step(model, optimizer, jnp.asarray(rng.choice(train, BATCH)))
        if step % 100 == 0 or step == args.steps:
            errors = bin_errors(held[:256])
            point = {
                "step": step,
                "held_out_loss": round(float(evaluate_loss(model, evaluation)), 3),
                "within_2_bins": round(float(np.mean(errors <= 2)), 3),
                "median_bin_error": float(np.median(errors)),
                **answered_things(held[:256]),
            }
            history.append(point)
            print(json.dumps(point), flush=True)
    print(
        json.dumps(
            {
                "source": args.source,
                "scenes": args.scenes,
                "held_out": len(held),
                "lr": args.lr,
                "number_lines": not args.random_symbols,
                "blank_images": args.blank_images,
                "set": args.set,
                **history[-1],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
