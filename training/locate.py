"""Localisation co-training: some samples ask the planner where one thing of the scene is.

A dataset may list, per frame, where things are (the built-in recorder's `scene_locations` column, written
with `--locations`): `red cube <x04><y07>; white box <x19><y08>`. With `DataConfig.locate_prob` p, a sample's
text row becomes, with probability p, a question about one of them, drawn uniformly ("locate the red cube"),
whose target is its location symbols (`<x04><y07>`), as PaliGemma is co-trained to detect objects. The
actor row and the flow loss are unchanged. A subtask's own location names the thing the hand is heading for,
so it can be read off the hand; a thing asked about is as often a distractor far from the hand, so the answer
has to come from binding its name to what the cameras show.
"""

from __future__ import annotations

import re

import numpy as np

SEPARATOR = "; "
QUESTION = "locate the {}"
_SYMBOLS = re.compile(r"(?:\s*<[a-z]+\d+>)+\s*$")


def scene_entries(scene: str) -> list[tuple[str, str]]:
    """(thing, location symbols) for each entry of a scene list; entries without symbols are skipped."""
    entries = []
    for entry in scene.split(SEPARATOR):
        match = _SYMBOLS.search(entry)
        if match is None or not entry[: match.start()].strip():
            continue
        entries.append((entry[: match.start()].strip(), match.group(0).strip()))
    return entries


def locate_sample(scene: str, rng: np.random.Generator) -> tuple[str, str] | None:
    """(question, answer) about one thing of `scene`, or None when it lists none."""
    entries = scene_entries(scene)
    if not entries:
        return None
    thing, where = entries[int(rng.integers(len(entries)))]
    return QUESTION.format(thing), where


def questions(scenes: list[str]) -> list[str]:
    """Every question the scenes can give (for the tokenizer's corpus)."""
    return sorted({QUESTION.format(thing) for scene in scenes for thing, _ in scene_entries(scene)})
