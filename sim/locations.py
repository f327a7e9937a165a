"""Where a subtask's target is, in words a tokenizer keeps whole: `move to the red cube <x12><y07>`.

PaliGemma names places with location tokens. The built-in tasks name the target of each subtask (the object
to reach, grasp or lift; the drop point to carry it to) by its table position in 1-cm bins, x then y, after
the subtask's words. The planner's cross-entropy on those two tokens teaches the shared backbone to find the
named object, and the actor's move becomes a function of where the target is (two tokens) and where the hand
is (its state tokens), instead of a search of the image for an object named in words.

Recordings with locations also list where every object and container is on each frame (`scene_locations`):
training asks the planner, on a share of its samples, where one of them is ("locate the blue cylinder" →
`<x08><y34>`), as PaliGemma is co-trained to detect objects. Unlike a subtask's target, a thing asked about
is as often away from the hand as near it, so the answer has to come from its colour in the image.

A tokenizer trained on such labels makes each `<…>` symbol one piece (`policy.tokenizer.train_tokenizer`).
Closed-loop metrics and exact-match scores compare the words; `split_location` takes the symbols off.
"""

from __future__ import annotations

import re

import numpy as np

from sim.tasks import PLACE_X, PLACE_Y

BIN = 0.01  # metres per bin
X_BINS = round((PLACE_X[1] - PLACE_X[0]) / BIN)
Y_BINS = round((PLACE_Y[1] - PLACE_Y[0]) / BIN)
_SUFFIX = re.compile(r"\s*<x(\d+)><y(\d+)>\s*$")


def _bin(value: float, low: float, bins: int) -> int:
    return int(np.clip(np.floor((value - low) / BIN), 0, bins - 1))


def location_words(xy: np.ndarray) -> str:
    """`<xNN><yNN>` for a table position (metres); positions off the placement area go to its edge bins."""
    return f"<x{_bin(float(xy[0]), PLACE_X[0], X_BINS):02d}><y{_bin(float(xy[1]), PLACE_Y[0], Y_BINS):02d}>"


def split_location(text: str) -> tuple[str, np.ndarray | None]:
    """(the subtask's words, the bin centre its location symbols name, or None without them)."""
    match = _SUFFIX.search(text)
    if match is None:
        return text, None
    x, y = int(match.group(1)), int(match.group(2))
    centre = np.array([PLACE_X[0] + (x + 0.5) * BIN, PLACE_Y[0] + (y + 0.5) * BIN])
    return text[: match.start()], centre


def location_symbols() -> list[str]:
    """Every symbol `location_words` can write."""
    return [f"<x{i:02d}>" for i in range(X_BINS)] + [f"<y{i:02d}>" for i in range(Y_BINS)]


SCENE_LOCATIONS = "scene_locations"  # the recorder's per-frame column
SCENE_SEPARATOR = "; "


def scene_locations(env) -> str:
    """Every object and container of `env` with where it is now: `red cube <x04><y07>; white box <x19><y08>`."""
    things = [(o.name, o.description) for o in env.layout.objects]
    things += [(c.name, c.description) for c in env.layout.containers]
    return SCENE_SEPARATOR.join(
        f"{description} {location_words(env.body_pos(name)[:2])}" for name, description in things
    )
