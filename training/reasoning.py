"""Reasoning annotations in the `cot_simple.json` style ("Do What You Say", seed 002) and the choice, per frame,
of what the sample teaches.

    {"<episode>": {"segments": [{"content": "Instruction: put the bowl on the plate", "start_step": 0,
                                 "end_step": 50, "updated_content": "Move the gripper above the bowl"}, ...]}}

Within a segment the robot should act on `updated_content`; entering it, the model should think and write
that reasoning. A frame becomes one of:

- think:                  context = the segment's `content`, target = its `updated_content`;
- think, outdated thought: context = an earlier segment's reasoning, target = the current one;
- act:                    context = the current reasoning;
- act, outdated thought:  context = the previous segment's reasoning (the model must keep acting while the
                          planner has not caught up).

`think_prob` picks thinking, `outdated_prob` the outdated variants (when the segment has a predecessor).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from training.lerobot import DatasetError


@dataclasses.dataclass(frozen=True)
class Segment:
    content: str
    start: int
    end: int
    reasoning: str


@dataclasses.dataclass(frozen=True)
class ReasoningChoice:
    context: str
    reasoning: str | None  # None: an act sample


def load_annotations(path: str | pathlib.Path) -> dict[int, list[Segment]]:
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"reasoning annotations {path} do not exist")
    try:
        document = json.loads(path.read_text())
        return {
            int(episode): sorted((_segment(s) for s in entry["segments"]), key=lambda segment: segment.start)
            for episode, entry in document.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path} is not a cot_simple.json-style file: {err}") from err


def _segment(entry: dict) -> Segment:
    return Segment(entry["content"], int(entry["start_step"]), int(entry["end_step"]), entry["updated_content"])


class ReasoningSampler:
    def __init__(self, annotations: dict[int, list[Segment]], think_prob: float = 0.5, outdated_prob: float = 0.25):
        for name, value in (("think_prob", think_prob), ("outdated_prob", outdated_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.annotations = annotations
        self.think_prob = think_prob
        self.outdated_prob = outdated_prob

    def segment_index(self, episode: int, frame: int) -> int:
        segments = self.annotations.get(episode)
        if not segments:
            raise DatasetError(f"reasoning annotations have no segments for episode {episode}")
        starts = np.array([s.start for s in segments])
        return max(int(np.searchsorted(starts, frame, side="right")) - 1, 0)

    def choose(self, episode: int, frame: int, rng: np.random.Generator) -> ReasoningChoice:
        index = self.segment_index(episode, frame)
        segments = self.annotations[episode]
        segment = segments[index]
        think = rng.random() < self.think_prob
        outdated = index > 0 and rng.random() < self.outdated_prob
        if think:
            context = segments[int(rng.integers(0, index))].reasoning if outdated else segment.content
            return ReasoningChoice(context, segment.reasoning)
        context = segments[index - 1].reasoning if outdated else segment.reasoning
        return ReasoningChoice(context, None)
