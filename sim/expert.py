"""Scripted experts: closed-loop state machines over privileged object poses.

    expert = sim.expert.ScriptedExpert()
    obs = env.reset()
    while True:
        action, subtask = expert.act(env)   # subtask, e.g. "grasp the red cube"
        obs, done, info = env.step(action)
        if done: break

Every stage (one object into one container) runs through five subtasks, and each action is labelled with
the one it serves:

    move to the {object}      over it with the gripper open, descending as the hand centres on it (a funnel)
    grasp the {object}        close the fingers and wait for them to settle on the object
    lift the {object}         raise it to the carrying height
    move above the {container} carry it over the drop point, lowering it to just above the rim as it centres
    release the {object}      open the fingers and back off upwards

The machine re-reads the world every step, so it recovers: a missed grasp, a dropped object or an object
that bounced out of the container sends it back to "move to" for that object.
"""

from __future__ import annotations

import math

import numpy as np

from sim import rotations as rot
from sim import scene as sc
from sim.env import POS_SCALE, ROT_SCALE
from sim.locations import location_words
from sim.tasks import in_container

APPROACH, GRASP, LIFT, TRANSPORT, RELEASE = "approach", "grasp", "lift", "transport", "release"

CARRY_Z = 0.15  # tool centre height while carrying (clears every rim and object)
HOVER_ABOVE = 0.08  # hover this far above the grasp point before descending
GRASP_ABOVE_CENTRE = 0.005
MIN_GRASP_Z = 0.024
RELEASE_OFFSET = 0.028  # two objects in one container: drop points this far either side of its centre
# Descents are funnels: the height allowed above the grasp (or drop) point grows from 0 at an xy error of
# `lo` to the full hover (or carrying) height at `hi`, so the hand descends while it centres and the motion is
# a smooth function of where the target is. The funnel's flat bottom is as wide as the gripper's tolerance
# (GRASP_XY, RELEASE_XY), and reaching it is the switch to grasping (releasing): a policy that is a
# centimetre off still reaches the expert's next phase, instead of hovering while it tries to centre.
GRASP_XY = 0.015
RELEASE_XY = 0.012
APPROACH_FUNNEL = (GRASP_XY, 0.03)
TRANSPORT_FUNNEL = (RELEASE_XY, 0.025)
AT_BOTTOM = 0.006  # height above the funnel's bottom that counts as arrived
DETOUR_REACHED = 0.02  # a detour is over once the hand is this close to the point over the wrong body
DETOUR_SECONDS = 4.0


def _funnel_height(xy_err: float, funnel: tuple[float, float], full: float) -> float:
    lo, hi = funnel
    return full * float(np.clip((xy_err - lo) / (hi - lo), 0.0, 1.0))


def _subtask(phase: str, obj_descr: str, con_descr: str) -> str:
    if phase == APPROACH:
        return f"move to the {obj_descr}"
    if phase == GRASP:
        return f"grasp the {obj_descr}"
    if phase == LIFT:
        return f"lift the {obj_descr}"
    if phase == TRANSPORT:
        return f"move above the {con_descr}"
    return f"release the {obj_descr}"


def subtask_phrases(env) -> set[str]:
    """Every subtask the expert can name in ``env``'s episode: the five phases of each (object, container) stage."""
    phrases = set()
    for obj, con in env.goal.stages:
        ospec, cspec = env.object_spec(obj), env.container_spec(con)
        for phase in (APPROACH, GRASP, LIFT, TRANSPORT, RELEASE):
            phrases.add(_subtask(phase, ospec.description, cspec.description))
    return phrases


def consistent_subtasks(env) -> set[str]:
    """The subtasks that fit the world as it is now, whatever led there: the current stage is the first whose
    object is not yet placed; with its object between the fingers the robot is grasping, lifting, carrying or
    releasing it (releasing only over its container), without it, moving to or grasping it. What the
    closed-loop planner metric compares a planner's subtask with; unlike the expert's own phase, it never
    depends on how the policy got here."""
    stages = env.goal.stages
    done = 0
    while done < len(stages) and in_container(env, *stages[done]) and not env.touching_gripper(stages[done][0]):
        done += 1
    extra: set[str] = set()
    if done == len(stages):
        obj, con = stages[-1]
        phases = {RELEASE}
    else:
        obj, con = stages[done]
        left, right = env.finger_contacts(obj)
        held = left and right and env.gripper_opening() > 0.008
        if not held:
            phases = {APPROACH, GRASP}
            near = float(np.linalg.norm(env.body_pos(obj)[:2] - env.body_pos(con)[:2]))
            if near < sc.CONTAINER_KINDS[env.container_spec(con).kind].inner:  # let go over its container
                phases.add(RELEASE)
        else:
            lifted = env.body_pos(obj)[2] > sc.OBJECT_KINDS[env.object_spec(obj).kind].half_height + 0.01
            over = (
                float(np.linalg.norm(env.ee_pos()[:2] - env.body_pos(con)[:2]))
                < sc.CONTAINER_KINDS[env.container_spec(con).kind].inner
            )
            phases = {GRASP, LIFT} if not lifted else ({TRANSPORT, RELEASE} if over else {LIFT, TRANSPORT})
        if done > 0:  # backing off from the object just placed
            prev_obj, prev_con = stages[done - 1]
            ospec, cspec = env.object_spec(prev_obj), env.container_spec(prev_con)
            extra = {_subtask(RELEASE, ospec.description, cspec.description)}
    ospec, cspec = env.object_spec(obj), env.container_spec(con)
    return {_subtask(p, ospec.description, cspec.description) for p in phases} | extra


def _nearest_equivalent(angle: float, period: float, ref: float) -> float:
    """The angle congruent to ``angle`` modulo ``period`` that is closest to ``ref``."""
    return ref + ((angle - ref + period / 2) % period) - period / 2


class ScriptedExpert:
    """Privileged expert for the placement tasks in :mod:`sim.tasks`."""

    def __init__(
        self,
        max_speed: float = 0.3,
        descend_speed: float = 0.15,
        max_turn_speed: float = 2.0,
        grasp_seconds: float = 0.4,
        release_seconds: float = 0.3,
        turn_wrist: bool = False,
        first_grasp_offset: dict[int, np.ndarray] | None = None,
        detours: dict[tuple[int, str], str] | None = None,
        locations: bool = False,
    ):
        """turn_wrist: align the fingers with the object's yaw (the built-in tasks bound the yaw so that a
        straight hand always fits, and then no rotation action is needed).
        first_grasp_offset: {stage: xyz offset} added to the grasp point of the first attempt of that stage,
        a deliberate miss that the expert then recovers from (see sim.recorder's ``mistakes``).
        detours: {(stage, APPROACH or TRANSPORT): body}: the first move of that phase in that stage goes over
        the wrong thing first (another object, another container), then on to the right one; a clean expert
        labelling alongside shows, frame by frame, that the subtask names the target wherever the hand is
        heading (see sim.recorder's ``detours``).
        locations: the two moves end with where they go, `<xNN><yNN>` (`sim.locations`): "move to the red cube"
        with the cube's table position, "move above the white bowl" with the drop point. Grasp, lift and release
        happen where the hand already is, and naming the hand's own position there would teach the planner to
        read the target off the hand, which in closed loop drags the target along with the hand.
        """
        self.max_speed = max_speed  # m/s
        self.descend_speed = descend_speed
        self.max_turn_speed = max_turn_speed  # rad/s
        self.grasp_seconds = grasp_seconds
        self.release_seconds = release_seconds
        self.turn_wrist = turn_wrist
        self.first_grasp_offset = dict(first_grasp_offset or {})
        self.detours = dict(detours or {})
        self.locations = locations
        self._episode_key = None

    # ------------------------------------------------------------------------------- bookkeeping

    def reset(self, env) -> None:
        self._episode_key = env.episode_id
        self.stage = 0
        self.phase = APPROACH
        self.counter = 0
        self.hold_pos = None
        self.grasp_yaw = 0.0
        self.release_xy: np.ndarray | None = None
        self.release_yaw: float | None = None
        self.attempts = 0
        self._detoured: set[tuple[int, str]] = set()

    @property
    def subtask(self) -> str:
        return self._label

    def act(self, env) -> tuple[np.ndarray, str]:
        """The next action (7,) for ``env`` and the subtask it serves."""
        if env.episode_id != self._episode_key:
            self.reset(env)
        stages = env.goal.stages
        for _ in range(3):  # re-plan when a stage finishes so the label names the new object
            stage = self.stage
            obj, con = stages[min(stage, len(stages) - 1)]
            ospec, cspec = env.object_spec(obj), env.container_spec(con)
            self._obj, self._con = obj, con
            self._okind = sc.OBJECT_KINDS[ospec.kind]
            self._ckind = sc.CONTAINER_KINDS[cspec.kind]
            if stage >= len(stages):  # all placed: hold still until the env reports success
                self.phase = RELEASE
            target_pos, target_yaw, grip = self._plan(env)
            if self.stage == stage:
                break
        if not self.turn_wrist:
            target_yaw = 0.0
        self._label = _subtask(self.phase, ospec.description, cspec.description)
        if self.locations and self.phase in (APPROACH, TRANSPORT):
            self._label = f"{self._label} {location_words(self._target_xy(env))}"
        return self._action(env, target_pos, target_yaw, grip), self._label

    def _target_xy(self, env) -> np.ndarray:
        """Where a move goes: the object, or the drop point above its container."""
        if self.phase == TRANSPORT:
            offset = self.release_xy if self.release_xy is not None else np.zeros(2)
            return env.body_pos(self._con)[:2] + offset
        return env.body_pos(self._obj)[:2]

    # -------------------------------------------------------------------------------- the machine

    def _seconds(self, env, s: float) -> int:
        return max(1, int(math.ceil(s * env.control_hz)))

    def _grasp_point(self, env) -> tuple[np.ndarray, float]:
        p = env.body_pos(self._obj)
        m = env.body_mat(self._obj)
        ee_yaw = rot.yaw_of_mat(env.ee_mat())
        up = int(np.argmax(np.abs(m[2, :])))  # the body axis closest to vertical
        if self._okind.name == "cube":
            horiz = m[:, (up + 1) % 3]
            yaw = _nearest_equivalent(math.atan2(horiz[1], horiz[0]), math.pi / 2, 0.0)
        else:  # cylinder: axis is body z
            axis = m[:, 2]
            if abs(axis[2]) > 0.7:  # upright: any yaw grips it
                yaw = float(np.clip(ee_yaw, -math.pi / 4, math.pi / 4))
            else:  # lying: close the fingers across it (hand x along the axis)
                yaw = _nearest_equivalent(math.atan2(axis[1], axis[0]), math.pi, 0.0)
        if not self.turn_wrist:
            yaw = 0.0
        z = max(p[2] + GRASP_ABOVE_CENTRE, MIN_GRASP_Z)
        point = np.array([p[0], p[1], z])
        if self.attempts == 0 and self.stage in self.first_grasp_offset:
            point = point + self.first_grasp_offset[self.stage]
        return point, yaw

    def _detour_point(self, env) -> np.ndarray | None:
        """Where a detour of this phase goes (over the wrong body, at the phase's travel height), or None when
        there is none or it is over: the hand got there, or it has tried for `DETOUR_SECONDS`."""
        key = (self.stage, self.phase)
        if key not in self.detours or key in self._detoured:
            return None
        if self.phase == APPROACH and env.gripper_opening() <= 2 * sc.FINGER_OPEN - 0.01:
            return None
        if self.phase == TRANSPORT and not self._object_in_hand(env):
            return None
        xy = env.body_pos(self.detours[key])[:2]
        z = self._grasp_point(env)[0][2] + HOVER_ABOVE if self.phase == APPROACH else CARRY_Z
        point = np.array([xy[0], xy[1], z])
        ee = env.ee_pos()
        self.counter += 1
        if np.linalg.norm(ee - point) < DETOUR_REACHED or self.counter > self._seconds(env, DETOUR_SECONDS):
            self._detoured.add(key)
            self.counter = 0
            return None
        if ee[2] < z - 0.025:
            return np.array([ee[0], ee[1], z])  # rise before moving sideways
        return point

    def _holding(self, env) -> bool:
        """Both pads on the object with the fingers closed on it: it is in the hand, whoever grasped it."""
        left, right = env.finger_contacts(self._obj)
        return left and right and 0.008 < env.gripper_opening() < 2 * sc.FINGER_OPEN - 0.01

    def _object_in_hand(self, env) -> bool:
        rel = env.body_pos(self._obj) - env.ee_pos()
        if np.linalg.norm(rel) > 0.045:
            return False
        return env.gripper_opening() > 0.008

    def _release_point(self, env) -> tuple[np.ndarray, float]:
        """Drop point above the target container and the yaw to hold there."""
        c = env.body_pos(self._con)
        ee_yaw = rot.yaw_of_mat(env.ee_mat())
        n_stages = len(env.goal.stages)
        if self.release_xy is None:
            if n_stages == 1:
                offset = np.zeros(2)
                yaw = ee_yaw
            else:
                # Drop away from objects already in this container, along the hand's x axis so that the
                # opening fingers (hand y) stay clear of them.
                others = [env.body_pos(o)[:2] for o, cc in env.goal.stages[: self.stage] if cc == self._con]
                if others:
                    away = c[:2] - np.mean(others, axis=0)
                    if np.linalg.norm(away) < 1e-3:
                        away = np.array([math.cos(ee_yaw), math.sin(ee_yaw)])
                    d = away / np.linalg.norm(away)
                    yaw = _nearest_equivalent(math.atan2(d[1], d[0]), math.pi, ee_yaw)
                    if not self.turn_wrist:  # drop along the hand's x axis, on the side away from the others
                        hand_x = np.array([math.cos(ee_yaw), math.sin(ee_yaw)])
                        d = hand_x if d @ hand_x >= 0 else -hand_x
                        yaw = ee_yaw
                else:
                    d = np.array([math.cos(ee_yaw), math.sin(ee_yaw)])
                    if self.stage == 0:
                        d = -d  # first object to the near side of the hand's x axis
                    yaw = ee_yaw
                offset = RELEASE_OFFSET * d
            self.release_xy = offset  # relative to the container, which may still move
            self.release_yaw = yaw
        assert self.release_yaw is not None  # set together with release_xy
        ck = self._ckind
        bottom = -(GRASP_ABOVE_CENTRE + self._okind.half_height)  # object bottom relative to the TCP
        z = c[2] + max(ck.floor - bottom + 0.015, ck.rim + sc.FINGERTIP_BELOW_TCP + 0.006)
        return np.array([c[0] + self.release_xy[0], c[1] + self.release_xy[1], z]), self.release_yaw

    def _goto(self, phase: str) -> None:
        self.phase = phase
        self.counter = 0
        if phase == APPROACH:
            self.hold_pos = None
            self.release_xy = None
            self.release_yaw = None
            self.attempts += 1

    def _plan(self, env):
        ee = env.ee_pos()
        ee_yaw = rot.yaw_of_mat(env.ee_mat())

        if self.phase == APPROACH and self._holding(env):
            # A grasp another hand made (a deliberate miss that caught the object anyway): carry on from it.
            self._goto(LIFT)
            self.hold_pos = ee.copy()
            self.grasp_yaw = ee_yaw

        detour = self._detour_point(env)
        if detour is not None:
            return detour, ee_yaw, -1.0 if self.phase == APPROACH else 1.0

        if self.phase == APPROACH:
            gp, yaw = self._grasp_point(env)
            hover_z = gp[2] + HOVER_ABOVE
            xy_err = float(np.linalg.norm(ee[:2] - gp[:2]))
            if env.gripper_opening() < 2 * sc.FINGER_OPEN - 0.01 and ee[2] < hover_z - 0.02:
                return ee, ee_yaw, -1.0  # first open the fingers where we are
            if abs(rot.wrap_angle(ee_yaw - yaw)) > 0.08:
                return np.array([gp[0], gp[1], hover_z]), yaw, -1.0  # turn above it before descending
            height = _funnel_height(xy_err, APPROACH_FUNNEL, HOVER_ABOVE)
            if xy_err > APPROACH_FUNNEL[1] and ee[2] < hover_z - 0.025:
                return np.array([ee[0], ee[1], hover_z]), yaw, -1.0  # rise before moving sideways
            if ee[2] - gp[2] < AT_BOTTOM and xy_err < GRASP_XY:
                self._goto(GRASP)
                self.hold_pos = ee.copy()
                self.grasp_yaw = yaw
            else:
                return np.array([gp[0], gp[1], gp[2] + height]), yaw, -1.0

        if self.phase == GRASP:
            self.counter += 1
            if self.counter >= self._seconds(env, self.grasp_seconds):
                left, right = env.finger_contacts(self._obj)
                if left and right and env.gripper_opening() > 0.008:
                    self._goto(LIFT)
                else:
                    self._goto(APPROACH)
                    return ee, ee_yaw, -1.0
            else:
                return self.hold_pos, self.grasp_yaw, 1.0

        if self.phase == LIFT:
            if not self._object_in_hand(env):
                self._goto(APPROACH)
                return ee, ee_yaw, -1.0
            if ee[2] > CARRY_Z - 0.01:
                self._goto(TRANSPORT)
            else:
                return np.array([self.hold_pos[0], self.hold_pos[1], CARRY_Z]), self.grasp_yaw, 1.0

        if self.phase == TRANSPORT:
            if not self._object_in_hand(env):
                self._goto(APPROACH)
                return ee, ee_yaw, -1.0
            rp, ryaw = self._release_point(env)
            xy_err = float(np.linalg.norm(ee[:2] - rp[:2]))
            if abs(rot.wrap_angle(ee_yaw - ryaw)) > 0.08:
                return np.array([rp[0], rp[1], max(ee[2], CARRY_Z)]), ryaw, 1.0
            height = _funnel_height(xy_err, TRANSPORT_FUNNEL, max(CARRY_Z - rp[2], 0.0))
            if ee[2] - rp[2] < AT_BOTTOM + 0.002 and xy_err < RELEASE_XY:
                self._goto(RELEASE)
                self.hold_pos = ee.copy()
            else:
                return np.array([rp[0], rp[1], rp[2] + height]), ryaw, 1.0

        # RELEASE
        self.counter += 1
        if self.hold_pos is None:
            self.hold_pos = ee.copy()
        if self.stage >= len(env.goal.stages):
            return np.array([self.hold_pos[0], self.hold_pos[1], self.hold_pos[2] + 0.06]), ee_yaw, -1.0
        open_enough = env.gripper_opening() > 2 * sc.FINGER_OPEN - 0.01
        if self.counter < self._seconds(env, self.release_seconds) or not open_enough:
            return self.hold_pos, ee_yaw, -1.0
        # Fingers open: back off upwards and watch the object settle.
        up = np.array([self.hold_pos[0], self.hold_pos[1], self.hold_pos[2] + 0.06])
        if not env.touching_gripper(self._obj):
            speed = float(np.linalg.norm(env.body_linvel(self._obj)))
            if in_container(env, self._obj, self._con):
                if speed < 0.1:
                    self.stage += 1
                    if self.stage < len(env.goal.stages):
                        self._goto(APPROACH)
                        self.attempts = 0
            elif speed < 0.05 and self.counter > self._seconds(env, 1.0):
                self._goto(APPROACH)  # it bounced out: pick it up again
        return up, ee_yaw, -1.0

    # ------------------------------------------------------------------------------------ action

    def _action(self, env, target_pos, target_yaw, grip) -> np.ndarray:
        hz = env.control_hz
        ee = env.ee_pos()
        err = np.asarray(target_pos, dtype=np.float64) - ee
        vmax = self.max_speed
        if self.phase == APPROACH and err[2] < 0 and np.linalg.norm(err[:2]) < 0.02:
            vmax = self.descend_speed
        step = vmax / hz
        n = float(np.linalg.norm(err))
        if n > step:
            err *= step / n
        a = np.zeros(7)
        a[:3] = err / POS_SCALE
        if self.turn_wrist:  # else no rotation at all: contacts tilt the hand by < 0.02 rad in a whole episode
            r_err = rot.rot_z(target_yaw) @ env.ee_mat().T
            aa = rot.mat_to_axisangle(r_err)
            turn = self.max_turn_speed / hz
            ang = float(np.linalg.norm(aa))
            if ang > turn:
                aa *= turn / ang
            a[3:6] = aa / ROT_SCALE
        a[6] = grip
        return np.clip(a, -1.0, 1.0)


def run_episode(env, expert: ScriptedExpert | None = None, seed: int | None = None, on_step=None) -> dict:
    """Roll one expert episode; returns {"success", "steps", "subtasks"} (``on_step(obs, action, subtask)``
    is called for every frame before the action is applied)."""
    expert = expert or ScriptedExpert()
    obs = env.reset(seed=seed)
    expert.reset(env)
    subtasks = []
    info = {"success": False}
    done = False
    while not done:
        action, subtask = expert.act(env)
        if on_step is not None:
            on_step(obs, action, subtask)
        subtasks.append(subtask)
        obs, done, info = env.step(action)
    return {"success": bool(info["success"]), "steps": env.step_count, "subtasks": subtasks}


def evaluate(task: str, seeds, **options) -> dict:
    """Expert success over ``seeds`` (no rendering unless options say so)."""
    from sim.tasks import make

    options.setdefault("render", False)
    results = []
    for s in seeds:
        env = make(task, seed=s, **options)
        try:
            r = run_episode(env)
        finally:
            env.close()
        results.append((s, r["success"], r["steps"]))
    n_ok = sum(ok for _, ok, _ in results)
    return {
        "task": task,
        "episodes": len(results),
        "successes": n_ok,
        "success_rate": n_ok / max(1, len(results)),
        "failed_seeds": [s for s, ok, _ in results if not ok],
        "mean_steps": float(np.mean([n for _, _, n in results])) if results else 0.0,
    }


def main(argv=None) -> None:
    import argparse
    import json
    import time

    from sim.tasks import list_tasks

    p = argparse.ArgumentParser(description="Scripted expert success rate on the built-in tasks.")
    p.add_argument("--task", action="append", help="task name (repeatable; default: all)")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--render", action="store_true", help="render the cameras too (slower)")
    args = p.parse_args(argv)
    for name in args.task or list_tasks():
        t = time.time()
        r = evaluate(name, range(args.first_seed, args.first_seed + args.seeds), render=args.render)
        r["seconds"] = round(time.time() - t, 1)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
