"""Built-in task family and registry.

    env = sim.tasks.make("pick_place", seed=3, image_size=128)
    obs = env.reset()                      # layout, instruction and goal come from the seed
    obs, done, info = env.step(action7)    # info["success"]

Tasks:
    pick_place  "put the {color} {object} in/on the {color} {container}"
    two_stage   "put the {A} in the {C}, then the {B} in the {C}"
Both add distractor objects (and sometimes a distractor container). The default layout, "slots", puts the
objects in three slots along the near edge of the workspace and the containers in two slots along the far
edge, each jittered by a few centimetres and assigned at random (as LIBERO's layouts are fixed regions with
small perturbations); "scatter" places everything anywhere on the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim import scene as sc

# Where things may be placed on the table (object centres), metres.
PLACE_X = (-0.15, 0.15)
PLACE_Y = (-0.21, 0.21)
MAX_OBJECT_YAW = 0.3  # rad: a 5 cm cube turned this far still fits the open fingers, so no wrist turn is needed
OBJ_OBJ_GAP = 0.12  # centre distance between two objects (leaves room for the open fingers)
OBJ_CON_GAP = 0.045  # clearance between an object's bounding circle and a container's
CON_CON_GAP = 0.02
SETTLED_SPEED = 0.08  # m/s: an object moving slower than this counts as resting

# The "slots" layout: slot centres (x, y) in metres and the uniform jitter around them.
OBJECT_SLOTS = ((-0.09, -0.14), (-0.09, 0.0), (-0.09, 0.14))
CONTAINER_SLOTS = ((0.1, -0.13), (0.1, 0.13))
OBJECT_JITTER = 0.02
CONTAINER_JITTER = 0.015
LAYOUTS = ("slots", "scatter")


@dataclass
class Goal:
    """What to put where: stages are (object body, container body) in order."""

    stages: list[tuple[str, str]] = field(default_factory=list)


def in_container(env, obj: str, con: str) -> bool:
    """Object centre lies within the container's inner footprint and below its rim (allowing a stack)."""
    ospec = env.object_spec(obj)
    cspec = env.container_spec(con)
    okind = sc.OBJECT_KINDS[ospec.kind]
    ckind = sc.CONTAINER_KINDS[cspec.kind]
    p = env.body_mat(con).T @ (env.body_pos(obj) - env.body_pos(con))
    if ckind.shape == "round":
        r = math.hypot(p[0], p[1])
    else:
        r = max(abs(p[0]), abs(p[1]))
    if r > ckind.inner + 0.008:
        return False
    return ckind.floor - 0.005 < p[2] < ckind.rim + 2 * okind.half_height + 0.02


def placed(env, obj: str, con: str) -> bool:
    """In the container, let go of, and at rest."""
    if not in_container(env, obj, con):
        return False
    if env.touching_gripper(obj):
        return False
    return float(np.linalg.norm(env.body_linvel(obj))) < SETTLED_SPEED


def _distinct_colours(descriptions: list[tuple[str, str]], n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """`n` (colour, kind) pairs in a random order, no two of one colour."""
    chosen: list[tuple[str, str]] = []
    for i in rng.permutation(len(descriptions)):
        if descriptions[i][0] not in {c for c, _ in chosen}:
            chosen.append(descriptions[i])
    if len(chosen) < n:
        raise ValueError(f"{n} things of distinct colours asked for, only {len(chosen)} colours known")
    return chosen[:n]


class PlacementTask:
    """Put objects into containers, one stage per (object, container) pair."""

    name = "placement"
    n_stages = 1
    max_seconds = 25.0
    distractor_range = (1, 2)

    def __init__(
        self,
        distractors: int | None = None,
        distractor_container: float = 0.3,
        object_kinds: tuple[str, ...] | None = None,
        container_kinds: tuple[str, ...] | None = None,
        layout: str = "slots",
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {list(LAYOUTS)}")
        self.layout = layout
        self.distractors = distractors
        self.distractor_container = float(distractor_container)
        self.object_kinds = tuple(object_kinds or sc.OBJECT_KINDS)
        self.container_kinds = tuple(container_kinds or sc.CONTAINER_KINDS)
        for k in self.object_kinds:
            if k not in sc.OBJECT_KINDS:
                raise ValueError(f"unknown object kind {k!r}; known: {sorted(sc.OBJECT_KINDS)}")
        for k in self.container_kinds:
            if k not in sc.CONTAINER_KINDS:
                raise ValueError(f"unknown container kind {k!r}; known: {sorted(sc.CONTAINER_KINDS)}")

    # ---------------------------------------------------------------------------------- sampling

    def sample(self, rng: np.random.Generator) -> tuple[sc.Layout, str, Goal]:
        for _ in range(200):
            out = self._try_sample(rng)
            if out is not None:
                return out
        raise RuntimeError("could not place the objects; use fewer distractors")

    def _try_sample(self, rng: np.random.Generator) -> tuple[sc.Layout, str, Goal] | None:
        n_distract = self.distractors
        if n_distract is None:
            n_distract = int(rng.integers(self.distractor_range[0], self.distractor_range[1] + 1))
        n_objects = self.n_stages + n_distract
        n_containers = 1 + int(rng.random() < self.distractor_container)
        if self.layout == "slots" and (n_objects > len(OBJECT_SLOTS) or n_containers > len(CONTAINER_SLOTS)):
            raise ValueError(
                f"the slots layout holds {len(OBJECT_SLOTS)} objects and {len(CONTAINER_SLOTS)} containers; "
                f"asked for {n_objects} and {n_containers} (use fewer distractors or layout='scatter')"
            )

        # One colour per object and per container in a scene, so that the colour alone picks the target out:
        # at the policy's 64² a cube and a cylinder of one colour are a few pixels apart.
        objects_ck = _distinct_colours([(c, k) for c in sc.OBJECT_COLORS for k in self.object_kinds], n_objects, rng)
        containers_ck = _distinct_colours(
            [(c, k) for c in sc.CONTAINER_COLORS for k in self.container_kinds], n_containers, rng
        )

        placed_xy: list[tuple[np.ndarray, float, str]] = []  # (xy, radius, "obj"|"con")

        def free(xy, radius, what):
            for q, r, w in placed_xy:
                d = float(np.linalg.norm(xy - q))
                if what == "obj" and w == "obj":
                    need = OBJ_OBJ_GAP
                elif what == "con" and w == "con":
                    need = radius + r + CON_CON_GAP
                else:
                    need = radius + r + OBJ_CON_GAP
                if d < need:
                    return False
            return True

        slots: dict[str, list[np.ndarray]] = {}
        if self.layout == "slots":  # drawn only here, so a scatter seed gives the scene it gave before slots
            slots["obj"] = [np.array(OBJECT_SLOTS[i]) for i in rng.permutation(len(OBJECT_SLOTS))]
            slots["con"] = [np.array(CONTAINER_SLOTS[i]) for i in rng.permutation(len(CONTAINER_SLOTS))]
        jitter = {"obj": OBJECT_JITTER, "con": CONTAINER_JITTER}

        def candidate(what, margin):
            if self.layout == "slots":
                return slots[what][0] + rng.uniform(-jitter[what], jitter[what], size=2)
            return np.array(
                [
                    rng.uniform(PLACE_X[0] + margin, PLACE_X[1] - margin),
                    rng.uniform(PLACE_Y[0] + margin, PLACE_Y[1] - margin),
                ]
            )

        def draw(radius, what, margin=0.0):
            for _ in range(60):
                xy = candidate(what, margin)
                if free(xy, radius, what):
                    if self.layout == "slots":
                        slots[what].pop(0)
                    placed_xy.append((xy, radius, what))
                    return xy
            return None

        containers = []
        for i, (color, kind) in enumerate(containers_ck):
            ck = sc.CONTAINER_KINDS[kind]
            xy = draw(ck.radius, "con", margin=0.05)
            if xy is None:
                return None
            containers.append(
                sc.ContainerSpec(
                    f"con{i}", kind, color, (float(xy[0]), float(xy[1])), float(rng.uniform(-math.pi, math.pi))
                )
            )
        objects = []
        for i, (color, kind) in enumerate(objects_ck):
            ok = sc.OBJECT_KINDS[kind]
            xy = draw(ok.radius, "obj")
            if xy is None:
                return None
            objects.append(
                sc.ObjectSpec(
                    f"obj{i}",
                    kind,
                    color,
                    (float(xy[0]), float(xy[1])),
                    float(rng.uniform(-MAX_OBJECT_YAW, MAX_OBJECT_YAW)),
                )
            )
        start = (-0.12 + rng.uniform(-0.03, 0.03), rng.uniform(-0.06, 0.06), 0.22 + rng.uniform(-0.02, 0.02))
        layout = sc.Layout(objects, containers, (float(start[0]), float(start[1]), float(start[2])))
        target_con = containers[0]
        goal = Goal([(objects[i].name, target_con.name) for i in range(self.n_stages)])
        return layout, self.instruction(layout, goal), goal

    # ------------------------------------------------------------------------------- language

    @staticmethod
    def _phrase(layout: sc.Layout, obj: str, con: str) -> str:
        o = next(x for x in layout.objects if x.name == obj)
        c = next(x for x in layout.containers if x.name == con)
        prep = sc.CONTAINER_KINDS[c.kind].preposition
        return f"the {o.description} {prep} the {c.description}"

    def instruction(self, layout: sc.Layout, goal: Goal) -> str:
        parts = [self._phrase(layout, o, c) for o, c in goal.stages]
        return "put " + ", then ".join(parts)

    # -------------------------------------------------------------------------------- success

    def on_reset(self, env) -> None:
        pass

    def stages_done(self, env) -> int:
        n = 0
        for obj, con in env.goal.stages:
            if not in_container(env, obj, con):
                break
            n += 1
        return n

    def success(self, env) -> bool:
        return all(placed(env, o, c) for o, c in env.goal.stages)


class PickPlaceTask(PlacementTask):
    name = "pick_place"
    n_stages = 1
    max_seconds = 25.0
    distractor_range = (1, 2)


class TwoStageTask(PlacementTask):
    name = "two_stage"
    n_stages = 2
    max_seconds = 45.0
    distractor_range = (1, 1)


# ------------------------------------------------------------------------------------------ registry

TASKS: dict[str, Callable[..., PlacementTask]] = {
    "pick_place": PickPlaceTask,
    "two_stage": TwoStageTask,
}

ENV_OPTIONS = ("image_size", "cameras", "control_hz", "render", "max_steps", "physics_dt", "shadows", "view_size")


def list_tasks() -> list[str]:
    return sorted(TASKS)


def make(name: str, seed: int = 0, **options):
    """Build the environment of task ``name``.

    Env options: image_size (int or (h, w), default 224), cameras (default ("agentview", "wrist")),
    control_hz (10), render (True), max_steps (task default), physics_dt (0.002), shadows (False),
    view_size (0; N > 0 lets ``env.views()`` render every camera at N² for videos).
    Task options: distractors (number of distractor objects; default random), distractor_container
    (probability of a second container, 0.3), object_kinds, container_kinds, layout ("slots", the default, or
    "scatter").
    """
    from sim.env import TabletopEnv

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {list_tasks()}")
    env_kw = {k: options.pop(k) for k in list(options) if k in ENV_OPTIONS}
    task = TASKS[name](**options)
    return TabletopEnv(task, seed=seed, **env_kw)
