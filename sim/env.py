"""The tabletop environment: LIBERO-style control of the built-in MuJoCo scene.

Action (7, float, clipped to [-1, 1]):
    [0:3] end-effector delta position, world frame, times ``POS_SCALE`` (0.05 m) per control step;
    [3:6] end-effector delta rotation as an axis-angle vector, world frame, times ``ROT_SCALE`` (0.5 rad);
    [6]   gripper: -1 open ... +1 closed (intermediate values give intermediate finger targets).
As in LIBERO/robosuite's OSC, the goal pose is the *current* pose plus the delta; a low-level position
controller then tracks it over the physics substeps of one control period (``control_hz``, default 10 Hz,
2 ms physics steps).

State (8, float32): EE position (3, world, metres), EE orientation as axis-angle (3; the identity is the
home orientation: fingers pointing down, opening along world y), finger joint positions (2: left in
[0, 0.05], right in [-0.05, 0]; open = +-0.05, as LIBERO's Panda fingers but with a wider stroke).

Observation: ``{"images": {camera: HxWx3 uint8}, "state": float32[8], "task": str}`` with images upright
(row 0 at the top; unlike LIBERO no 180 degree flip is needed); ``images`` is empty with ``render=False``.

``step`` returns ``(obs, done, info)``; ``info``: ``success`` (all goal objects placed and at rest),
``timeout`` (``max_steps`` reached without success), ``step`` (steps taken), ``stage`` (how many goal
stages, in order, currently have their object inside the container). ``done = success or timeout``.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from typing import Any

from sim.render import CameraRenderer, default_gl_backend

default_gl_backend()

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from sim import rotations as rot  # noqa: E402
from sim import scene as sc  # noqa: E402

POS_SCALE = 0.05
ROT_SCALE = 0.5
# Reachable box for the tool centre point (world frame, metres).
WORKSPACE_LOW = np.array([-0.38, -0.45, 0.02])
WORKSPACE_HIGH = np.array([0.38, 0.45, 0.45])
PITCH_ROLL_LIMIT = 1.0
YAW_LIMIT = 3.8
CAMERAS = ("agentview", "wrist")
SETTLE_SECONDS = 0.3
_EPISODE_IDS = itertools.count(1)  # unique per process: lets controllers notice a reset


class TabletopEnv:
    """One tabletop task instance. Build it with :func:`sim.tasks.make`."""

    def __init__(
        self,
        task,
        seed: int = 0,
        image_size: int | Sequence[int] = 224,
        cameras: Sequence[str] = CAMERAS,
        control_hz: float = 10.0,
        render: bool = True,
        max_steps: int | None = None,
        physics_dt: float = 0.002,
        shadows: bool = False,
        view_size: int = 0,
    ):
        self.task = task
        self.seed = int(seed)
        if isinstance(image_size, (int, np.integer)):
            image_size = (int(image_size), int(image_size))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.cameras = tuple(cameras)
        self.control_hz = float(control_hz)
        self.physics_dt = float(physics_dt)
        self.n_substeps = max(1, int(round(1.0 / (self.control_hz * self.physics_dt))))
        self.render_enabled = bool(render)
        self.shadows = bool(shadows)
        self.view_size = int(view_size)
        self._view_renderer: CameraRenderer | None = None
        self._max_steps_override = max_steps
        self._next_seed = self.seed
        self._renderer: CameraRenderer | None = None
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self.layout: sc.Layout | None = None
        self.goal: Any = None
        self.instruction = ""
        self.episode_seed: int | None = None
        self.episode_id = 0
        self.step_count = 0
        self._done = False
        self._success = False

    # ------------------------------------------------------------------------------------------ api

    @property
    def fps(self) -> float:
        return self.control_hz

    @property
    def max_steps(self) -> int:
        if self._max_steps_override is not None:
            return int(self._max_steps_override)
        return int(math.ceil(self.task.max_seconds * self.control_hz))

    def reset(self, seed: int | None = None) -> dict:
        """Start an episode. Without ``seed`` the env uses its seed, then seed+1, seed+2, ... on later resets,
        so episode k of ``make(name, s)`` equals the first episode of ``make(name, s + k)``."""
        if seed is None:
            seed = self._next_seed
        self.episode_seed = int(seed)
        self._next_seed = self.episode_seed + 1
        # The task name salts the seed so that two tasks with one seed do not share a layout.
        rng = np.random.default_rng([self.episode_seed, zlib.crc32(self.task.name.encode())])
        self.layout, self.instruction, self.goal = self.task.sample(rng)
        xml = sc.build_mjcf(self.layout, self.image_size, self.physics_dt, self.shadows, self.view_size)
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._index_model()
        mujoco.mj_resetDataKeyframe(self.model, self.data, 0)
        mujoco.mj_forward(self.model, self.data)
        settle = int(round(SETTLE_SECONDS / self.physics_dt))
        mujoco.mj_step(self.model, self.data, nstep=settle)
        self.episode_id = next(_EPISODE_IDS)
        self.step_count = 0
        self._done = False
        self._success = False
        if self.render_enabled:
            if self._renderer is None:
                self._renderer = CameraRenderer(*self.image_size)
            self._renderer.bind(self.model)
        if self._view_renderer is not None:
            self._view_renderer.bind(self.model)
        self.task.on_reset(self)
        return self.observation()

    def step(self, action) -> tuple[dict, bool, dict]:
        if self.model is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,):
            raise ValueError(f"action must have 7 values, got shape {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action has non-finite values")
        a = np.clip(a, -1.0, 1.0)
        self._apply_action(a)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self.step_count += 1
        success = bool(self.task.success(self))
        self._success = self._success or success
        timeout = self.step_count >= self.max_steps
        self._done = success or timeout
        info = {
            "success": success,
            "timeout": timeout and not success,
            "step": self.step_count,
            "stage": self.task.stages_done(self),
        }
        return self.observation(), self._done, info

    def observation(self) -> dict:
        images = {}
        if self.render_enabled:
            for cam in self.cameras:
                images[cam] = self.render(cam)
        return {"images": images, "state": self.state(), "task": self.instruction}

    def render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = CameraRenderer(*self.image_size)
            self._renderer.bind(self.model)
        return self._renderer.render(self.data, camera)

    def views(self) -> dict[str, np.ndarray]:
        """Every camera rendered at ``view_size``² for people to watch (videos); the policy sees ``observation()``."""
        if not self.view_size:
            raise RuntimeError("this env has no view_size; make it with view_size=N to render views")
        if self._view_renderer is None:
            self._view_renderer = CameraRenderer(self.view_size, self.view_size)
            self._view_renderer.bind(self.model)
        return {cam: self._view_renderer.render(self.data, cam) for cam in self.cameras}

    def pixel(self, camera: str, point: np.ndarray, size: int) -> tuple[float, float] | None:
        """Where a world point appears in an upright ``size``² image of ``camera`` (column, row), or None behind it."""
        assert self.model is not None and self.data is not None, "call reset() first"
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise KeyError(f"no camera named {camera!r}")
        rot = self.data.cam_xmat[cid].reshape(3, 3)
        local = rot.T @ (np.asarray(point, np.float64) - self.data.cam_xpos[cid])
        if local[2] >= 0:  # MuJoCo cameras look along their -z axis
            return None
        focal = size / 2 / math.tan(math.radians(self.model.cam_fovy[cid]) / 2)
        return size / 2 + focal * local[0] / -local[2], size / 2 - focal * local[1] / -local[2]

    def close(self) -> None:
        for renderer in (self._renderer, self._view_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._view_renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------------------------- robot state

    def state(self) -> np.ndarray:
        s = np.empty(8, dtype=np.float32)
        s[:3] = self.ee_pos()
        s[3:6] = rot.mat_to_axisangle(self.ee_mat())
        s[6:8] = self.gripper_qpos()
        return s

    def ee_pos(self) -> np.ndarray:
        assert self.data is not None, "call reset() first"
        return self.data.site_xpos[self._ee_site].copy()

    def ee_mat(self) -> np.ndarray:
        assert self.data is not None, "call reset() first"
        return self.data.site_xmat[self._ee_site].reshape(3, 3).copy()

    def gripper_qpos(self) -> np.ndarray:
        assert self.data is not None, "call reset() first"
        return self.data.qpos[self._finger_qadr].copy()

    def gripper_opening(self) -> float:
        """Distance between the finger pads (m)."""
        q = self.gripper_qpos()
        return float(q[0] - q[1])

    # --------------------------------------------------------------------------- privileged world

    def body_pos(self, name: str) -> np.ndarray:
        assert self.data is not None, "call reset() first"
        return self.data.xpos[self._body_id(name)].copy()

    def body_mat(self, name: str) -> np.ndarray:
        assert self.data is not None, "call reset() first"
        return self.data.xmat[self._body_id(name)].reshape(3, 3).copy()

    def body_linvel(self, name: str) -> np.ndarray:
        assert self.model is not None and self.data is not None, "call reset() first"
        bid = self._body_id(name)
        adr = self.model.jnt_dofadr[self.model.body_jntadr[bid]]
        return self.data.qvel[adr : adr + 3].copy()

    def object_spec(self, name: str) -> sc.ObjectSpec:
        assert self.layout is not None, "call reset() first"
        for o in self.layout.objects:
            if o.name == name:
                return o
        raise KeyError(name)

    def container_spec(self, name: str) -> sc.ContainerSpec:
        assert self.layout is not None, "call reset() first"
        for c in self.layout.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def touching_gripper(self, body: str) -> bool:
        """Whether any geom of ``body`` is in contact with a finger or the palm."""
        assert self.model is not None and self.data is not None, "call reset() first"
        bid = self._body_id(body)
        d = self.data
        gb = self.model.geom_bodyid
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = gb[c.geom1], gb[c.geom2]
            if (b1 == bid and b2 in self._gripper_bodies) or (b2 == bid and b1 in self._gripper_bodies):
                return True
        return False

    def finger_contacts(self, body: str) -> tuple[bool, bool]:
        """(left pad touches body, right pad touches body)."""
        assert self.model is not None and self.data is not None, "call reset() first"
        bid = self._body_id(body)
        left = right = False
        gb = self.model.geom_bodyid
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            b1, b2 = gb[c.geom1], gb[c.geom2]
            other = b2 if b1 == bid else (b1 if b2 == bid else -1)
            if other == self._left_body:
                left = True
            elif other == self._right_body:
                right = True
        return left, right

    @property
    def success(self) -> bool:
        return self._success

    @property
    def done(self) -> bool:
        return self._done

    # ------------------------------------------------------------------------------------ internals

    def _index_model(self) -> None:
        m = self.model
        assert m is not None
        self._ee_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "ee")
        self._arm_qadr = np.array(
            [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in sc.ARM_JOINTS]
        )
        self._finger_qadr = np.array(
            [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in sc.FINGER_JOINTS]
        )
        self._body_ids = {m.body(i).name: i for i in range(m.nbody)}
        self._left_body = self._body_ids["finger_left"]
        self._right_body = self._body_ids["finger_right"]
        self._gripper_bodies = {self._left_body, self._right_body, self._body_ids["hand"]}

    def _body_id(self, name: str) -> int:
        try:
            return self._body_ids[name]
        except KeyError:
            raise KeyError(f"no body named {name!r}") from None

    def _apply_action(self, a: np.ndarray) -> None:
        d = self.data
        assert d is not None
        goal_pos = np.clip(self.ee_pos() + a[:3] * POS_SCALE, WORKSPACE_LOW, WORKSPACE_HIGH)
        goal_mat = rot.axisangle_to_mat(a[3:6] * ROT_SCALE) @ self.ee_mat()
        yaw, pitch, roll = rot.mat_to_euler_zyx(goal_mat)
        cur_yaw = float(d.qpos[self._arm_qadr[3]])
        yaw = cur_yaw + rot.wrap_angle(yaw - cur_yaw)  # continuous yaw: no jump at +-pi
        yaw = float(np.clip(yaw, -YAW_LIMIT, YAW_LIMIT))
        pitch = float(np.clip(pitch, -PITCH_ROLL_LIMIT, PITCH_ROLL_LIMIT))
        roll = float(np.clip(roll, -PITCH_ROLL_LIMIT, PITCH_ROLL_LIMIT))
        opening = sc.FINGER_OPEN * (1.0 - a[6]) / 2.0
        d.ctrl[:] = (goal_pos[0], goal_pos[1], goal_pos[2], yaw, pitch, roll, opening, -opening)
