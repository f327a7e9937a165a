"""How often the planner names the scripted expert's subtask on held-out frames, and how fast it decodes.

    python -m app.planner_eval --checkpoint DIR [--tokenizer PATH] [--tasks pick_place two_stage]
        [--episodes 10] [--seed 5000] [--every 1] [--batch 16] [--max-tokens 20] [--config NAME]
        [--json OUT]

Episode k of a task uses seed SEED + k, as in `robot-runtime rollout`; the default seeds lie far from the
recorder's default (0, 1, ...) and from the bundle's recordings (100000 and up), so the layouts are ones the
planner was not trained on. Frame t is the observation
before action t labelled with the subtask the expert served with that action (the recorder's convention),
rendered at the checkpoint's image size and given to the planner under the training camera keys
(`policy.inputs.LIBERO_CAMERAS`). Decoding is greedy, `--batch` frames per decoder call.

The last stdout line is one JSON object with the figures; `--json OUT` writes it with every frame's label and
prediction added.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from planner.decoder import DEFAULT_MAX_NEW_TOKENS, DecodeRequest, SubtaskDecoder
from policy.config import NAMED_CONFIGS
from policy.errors import UserFacingError
from policy.inputs import LIBERO_CAMERAS
from policy.model_dir import ModelDir
from policy.prompts import clean_instruction
from sim.expert import GRASP_XY, ScriptedExpert, run_episode
from sim.locations import location_symbols, split_location
from sim.rollout_report import latency_summary
from sim.tasks import list_tasks, make
from training.metrics import Progress

PHASES = ("move to", "grasp", "lift", "move above", "release")
OTHER_PHASE = "other"
DEFAULT_TASKS = ("pick_place", "two_stage")
DEFAULT_SEED = 5000
MISMATCH_EXAMPLES = 5


class PlannerEvalError(UserFacingError):
    """A bad argument or a checkpoint the sim cannot feed; one line for the user."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One observation of an expert episode: model camera key → image, the robot state, the expert's label."""

    task: str
    seed: int
    step: int
    instruction: str
    cameras: Mapping[str, np.ndarray]
    label: str
    state: np.ndarray | None = None
    action: np.ndarray | None = None  # the expert's action after this observation (robot units)


@dataclasses.dataclass(frozen=True)
class Predictions:
    texts: list[str]
    unfinished: int
    frame_ms: list[float]
    call_ms: list[float]


def collect_frames(
    tasks: Sequence[str],
    episodes: int,
    seed: int,
    image_size: int,
    *,
    every: int = 1,
    cameras: Mapping[str, str] = LIBERO_CAMERAS,
    locations: bool = False,
    progress: bool = False,
) -> list[Frame]:
    """Every `every`-th frame (from step 0) of `episodes` expert episodes per task, with its label (ending in
    the target's location words with `locations`)."""
    bar = Progress(len(tasks) * episodes, label="episodes", enabled=progress)
    frames: list[Frame] = []
    done = 0
    try:
        for task in tasks:
            env = make(task, seed=seed, image_size=image_size, cameras=tuple(cameras))
            try:
                for k in range(episodes):
                    frames += _episode_frames(env, task, seed + k, every, cameras, locations)
                    done += 1
                    bar.update(done, f"{len(frames)} frames")
            finally:
                env.close()
    finally:
        bar.close()
    return frames


def _episode_frames(env, task: str, seed: int, every: int, cameras: Mapping[str, str], locations: bool) -> list[Frame]:
    frames = []

    def keep(obs: dict, action: np.ndarray, subtask: str) -> None:
        if env.step_count % every == 0:
            images = {cameras[c]: image for c, image in obs["images"].items()}
            frames.append(
                Frame(
                    task,
                    seed,
                    env.step_count,
                    obs["task"],
                    images,
                    subtask,
                    np.asarray(obs["state"]),
                    np.asarray(action, np.float32),
                )
            )

    run_episode(env, ScriptedExpert(locations=locations), seed=seed, on_step=keep)
    return frames


def plan_frames(decoder, frames: Sequence[Frame], batch: int, *, progress: bool = False) -> Predictions:
    """Greedy subtasks for `frames`, `batch` per decoder call; a call's wall time is shared by its frames."""
    bar = Progress(len(frames), label="frames", enabled=progress)
    texts, frame_ms, call_ms, unfinished = [], [], [], 0
    try:
        for start in range(0, len(frames), batch):
            chunk = frames[start : start + batch]
            requests = [DecodeRequest(f.cameras, f.instruction, f.state) for f in chunk]
            began = time.perf_counter()
            results = decoder.decode(requests, temperature=0.0)
            elapsed_ms = (time.perf_counter() - began) * 1e3
            texts += [r.text for r in results]
            unfinished += sum(not r.finished for r in results)
            call_ms.append(elapsed_ms)
            frame_ms += [elapsed_ms / len(chunk)] * len(chunk)
            bar.update(len(texts))
    finally:
        bar.close()
    return Predictions(texts, unfinished, frame_ms, call_ms)


def phase_of(subtask: str) -> str:
    """The expert's verb that opens a label (see `sim.expert`), or "other"."""
    for phase in PHASES:
        if subtask.startswith(phase + " "):
            return phase
    return OTHER_PHASE


def score(predictions: Sequence[str], labels: Sequence[str], tasks: Sequence[str]) -> dict:
    """Exact match overall, per task and per phase of the expected label, and the commonest mismatches.

    A label is compared as the planner learns to write it (`clean_instruction`, as training's target).
    phase_match counts predictions that open with the right verb, whatever object they name.
    """
    if not len(predictions) == len(labels) == len(tasks):
        raise ValueError(f"{len(predictions)} predictions, {len(labels)} labels and {len(tasks)} tasks")
    if not labels:
        raise ValueError("no frames to score")
    expected = [clean_instruction(label) for label in labels]
    said = [split_location(got) for got in predictions]
    meant = [split_location(want) for want in expected]
    hits = [got[0] == want[0] for got, want in zip(said, meant, strict=True)]
    phases = [phase_of(want) for want in expected]

    def rate(rows: list[int]) -> dict:
        correct = sum(hits[i] for i in rows)
        return {
            "frames": len(rows),
            "correct": correct,
            "exact_match": correct / len(rows),
        }

    def grouped(keys: Sequence[str], order: Sequence[str]) -> dict:
        rows = collections.defaultdict(list)
        for i, key in enumerate(keys):
            rows[key].append(i)
        return {key: rate(rows[key]) for key in order if key in rows}

    mismatches = collections.Counter(
        (want[0], got[0]) for got, want, hit in zip(said, meant, hits, strict=True) if not hit
    )
    phase_hits = sum(phase_of(got) == phase for got, phase in zip(predictions, phases, strict=True))
    return {
        **rate(list(range(len(labels)))),
        "phase_match": phase_hits / len(labels),
        "per_task": grouped(tasks, list(dict.fromkeys(tasks))),
        "per_phase": grouped(phases, (*PHASES, OTHER_PHASE)),
        "location": location_fit([got[1] for got in said], [want[1] for want in meant], hits),
        "mismatches": [
            {"expected": want, "got": got, "count": count}
            for (want, got), count in mismatches.most_common(MISMATCH_EXAMPLES)
        ],
    }


def location_fit(said: Sequence[np.ndarray | None], meant: Sequence[np.ndarray | None], hits: Sequence[bool]) -> dict:
    """How far the planner's location words put the target from the expert's, on frames whose words match and
    whose label has a location: the median error of those that name one, and the share within the gripper's
    tolerance (`sim.expert.GRASP_XY`, 1.5 cm), a missing location counting as outside. `{"frames": 0}` when no
    label has a location."""
    rows = [i for i, want in enumerate(meant) if want is not None and hits[i]]
    errors = [
        float(np.linalg.norm(got - want))
        for got, want in ((said[i], meant[i]) for i in rows)
        if got is not None and want is not None
    ]
    if not rows:
        return {"frames": 0}
    return {
        "frames": len(rows),
        "missing": len(rows) - len(errors),
        "median_cm": round(100 * float(np.median(errors)), 2) if errors else None,
        "within_grasp_tolerance": round(sum(e <= GRASP_XY for e in errors) / len(rows), 4),
    }


def speaks_locations(pieces: Sequence[str]) -> bool:
    """Whether a checkpoint's tokenizer holds the built-in tasks' location words (it was trained on them).

    Only the bins some training label used are pieces: the slots layout never names most of the table."""
    return bool(set(location_symbols()) & set(pieces))


def check_tasks(tasks: Sequence[str], error: type[UserFacingError]) -> None:
    """Raises `error` naming the first of `tasks` that is not a built-in task."""
    unknown = [t for t in tasks if t not in list_tasks()]
    if unknown:
        raise error(f"unknown task {unknown[0]!r}; expected some of {list_tasks()}")


def load_decoder(
    checkpoint: pathlib.Path,
    tokenizer: pathlib.Path | None,
    config_name: str | None,
    batch: int,
    max_new_tokens: int,
) -> tuple[ModelDir, SubtaskDecoder]:
    """(ModelDir, SubtaskDecoder) as `robot-runtime plan` builds them, with one batch bucket of `batch`."""
    if config_name is not None and config_name not in NAMED_CONFIGS:
        raise PlannerEvalError(f"unknown --config {config_name!r}; expected one of {sorted(NAMED_CONFIGS)}")
    model_dir = ModelDir.open(checkpoint, config_name=config_name, tokenizer=tokenizer)
    decoder = SubtaskDecoder(
        model_dir.load_model(),
        model_dir.text_tokenizer(),
        model_dir.config,
        max_new_tokens=max_new_tokens,
        buckets=(batch,),
        norm_stats=model_dir.norm_stats,
    )
    return model_dir, decoder


def evaluate(
    checkpoint: pathlib.Path,
    tokenizer: pathlib.Path | None = None,
    *,
    config_name: str | None = None,
    tasks: Sequence[str] = DEFAULT_TASKS,
    episodes: int = 10,
    seed: int = DEFAULT_SEED,
    every: int = 1,
    batch: int = 16,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """The summary and one row per frame (task, seed, step, label, prediction).

    The decoder is built and compiled before any episode runs, so a bad checkpoint fails fast and compiling
    stays out of the latencies.
    """
    check_tasks(tasks, PlannerEvalError)
    for flag, value in (
        ("--episodes", episodes),
        ("--every", every),
        ("--batch", batch),
    ):
        if value < 1:
            raise PlannerEvalError(f"{flag} must be at least 1, got {value}")
    started = time.perf_counter()
    model_dir, decoder = load_decoder(checkpoint, tokenizer, config_name, batch, max_new_tokens)
    keys = model_dir.config.image_keys
    cameras = {c: key for c, key in LIBERO_CAMERAS.items() if key in keys}
    if not cameras:
        raise PlannerEvalError(f"the model reads {list(keys)}, none of the sim's {list(LIBERO_CAMERAS.values())}")
    image_size = model_dir.config.vision.image_size
    decoder.warm_up()
    frames = collect_frames(
        tasks,
        episodes,
        seed,
        image_size,
        every=every,
        cameras=cameras,
        locations=speaks_locations(model_dir.text_tokenizer().pieces()),
        progress=progress,
    )
    predictions = plan_frames(decoder, frames, batch, progress=progress)
    summary = {
        "checkpoint": str(model_dir.root),
        "tasks": list(tasks),
        "episodes": episodes,
        "seed": seed,
        "every": every,
        "image_size": image_size,
        "cameras": cameras,
        **score(predictions.texts, [f.label for f in frames], [f.task for f in frames]),
        "unfinished": predictions.unfinished,
        "latency_ms": {
            "batch": batch,
            "batched": batch > 1,
            "per_frame": latency_summary(predictions.frame_ms),
            "per_call": latency_summary(predictions.call_ms),
        },
        "wall_s": round(time.perf_counter() - started, 2),
    }
    rows = [
        {
            "task": f.task,
            "seed": f.seed,
            "step": f.step,
            "label": f.label,
            "prediction": text,
        }
        for f, text in zip(frames, predictions.texts, strict=True)
    ]
    return summary, rows


def report_lines(summary: dict) -> list[str]:
    """The human-readable report printed above the JSON line."""

    def ratio(row: dict) -> str:
        return f"{row['exact_match']:.3f} ({row['correct']}/{row['frames']})"

    source = (
        f"{summary['episodes']} episodes per task from seed {summary['seed']}, "
        f"one frame in {summary['every']}, {summary['image_size']} px"
    )
    lines = [
        f"{summary['checkpoint']}: {summary['frames']} frames of {source}",
        f"exact match: {ratio(summary)}",
    ]
    lines += [f"  {task:<12} {ratio(row)}" for task, row in summary["per_task"].items()]
    lines.append("per phase of the expected label:")
    lines += [f"  {phase:<12} {ratio(row)}" for phase, row in summary["per_phase"].items()]
    lines.append(f"phase match (right verb, any object): {summary['phase_match']:.3f}")
    location = summary["location"]
    if location["frames"]:
        lines.append(
            f"location words, {location['frames']} frames with the right words: median error "
            f"{location['median_cm']} cm, {location['within_grasp_tolerance']:.3f} within the grasp tolerance "
            f"({location['missing']} without a location)"
        )
    if summary["unfinished"]:
        lines.append(f"{summary['unfinished']} decodes hit --max-tokens before EOS")
    if summary["mismatches"]:
        lines.append("commonest mismatches (expected -> got):")
        lines += [f"  {m['count']:>4} x  {m['expected']!r} -> {m['got']!r}" for m in summary["mismatches"]]
    latency = summary["latency_ms"]
    per_frame, per_call = latency["per_frame"], latency["per_call"]
    how = f"batched, {latency['batch']} frames per call" if latency["batched"] else "unbatched"
    lines.append(
        f"planner latency per frame: p50 {per_frame['p50']:.1f} ms, p99 {per_frame['p99']:.1f} ms ({how}; "
        f"per call p50 {per_call['p50']:.1f} ms, p99 {per_call['p99']:.1f} ms)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.planner_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="model directory")
    parser.add_argument(
        "--tokenizer",
        type=pathlib.Path,
        help="SentencePiece model (default: the checkpoint's)",
    )
    parser.add_argument("--config", help="model config name, for checkpoints without model_config.json")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="episode k uses seed SEED + k")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame")
    parser.add_argument("--batch", type=int, default=16, help="frames per decoder call")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="most tokens per subtask",
    )
    parser.add_argument(
        "--json",
        type=pathlib.Path,
        metavar="OUT",
        help="also write the summary and every frame",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        summary, rows = evaluate(
            args.checkpoint,
            args.tokenizer,
            config_name=args.config,
            tasks=args.tasks,
            episodes=args.episodes,
            seed=args.seed,
            every=args.every,
            batch=args.batch,
            max_new_tokens=args.max_tokens,
            progress=not args.no_progress,
        )
    except (UserFacingError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    for line in report_lines(summary):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "frames_detail": rows}, indent=1) + "\n")
        print(f"per-frame results: {args.json}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
