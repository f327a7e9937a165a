"""Physics sanity of the built-in scene: things rest on the table and grasps hold by friction alone."""

import mujoco
import numpy as np

from sim import tasks


def _cube_env(**kw):
    env = tasks.make(
        "pick_place", seed=0, render=False, object_kinds=("cube",), distractors=0, distractor_container=0.0, **kw
    )
    env.reset()
    return env


def _set_free_pose(env, body, pos, quat=(1.0, 0.0, 0.0, 0.0)):
    m, d = env.model, env.data
    jid = m.body_jntadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body)]
    assert m.jnt_type[jid] == mujoco.mjtJoint.mjJNT_FREE
    adr, dof = m.jnt_qposadr[jid], m.jnt_dofadr[jid]
    d.qpos[adr : adr + 3] = pos
    d.qpos[adr + 3 : adr + 7] = np.asarray(quat) / np.linalg.norm(quat)
    d.qvel[dof : dof + 6] = 0.0
    mujoco.mj_forward(m, d)


def _drive(env, target, grip, steps, yaw_gain=0.0):
    """Proportional EE control towards ``target`` for ``steps`` control steps."""
    for _ in range(steps):
        a = np.zeros(7)
        a[:3] = np.clip((np.asarray(target) - env.ee_pos()) / 0.05, -0.6, 0.6)
        a[6] = grip
        env.step(a)


def test_scene_has_no_welds_and_free_objects():
    env = _cube_env()
    m = env.model
    assert m.neq == 0  # nothing welded or attached
    for spec in env.layout.objects + env.layout.containers:
        jid = m.body_jntadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, spec.name)]
        assert m.jnt_type[jid] == mujoco.mjtJoint.mjJNT_FREE


def test_dropped_object_comes_to_rest_on_table():
    env = _cube_env()
    obj = env.goal.stages[0][0]
    xy = env.body_pos(obj)[:2]
    _set_free_pose(env, obj, (xy[0], xy[1], 0.15), quat=(0.9, 0.3, 0.2, 0.1))
    assert env.body_pos(obj)[2] > 0.14
    mujoco.mj_step(env.model, env.data, nstep=int(1.5 / env.model.opt.timestep))
    z = env.body_pos(obj)[2]
    assert abs(z - 0.025) < 0.002, z  # resting on a face of the 5 cm cube, not sinking in
    assert np.linalg.norm(env.body_linvel(obj)) < 1e-2
    table = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, "table")
    gb = env.model.geom_bodyid
    bid = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, obj)
    touching = [
        c
        for c in env.data.contact[: env.data.ncon]
        if {c.geom1, c.geom2} & {table} and bid in (gb[c.geom1], gb[c.geom2])
    ]
    assert touching


def test_grasp_lift_and_hold_by_friction():
    env = _cube_env()
    obj = env.goal.stages[0][0]
    p = env.body_pos(obj)
    _set_free_pose(env, obj, (p[0], p[1], 0.0205))  # axis-aligned with the open fingers
    mujoco.mj_step(env.model, env.data, nstep=100)
    p = env.body_pos(obj)
    _drive(env, (p[0], p[1], 0.12), -1.0, 25)
    _drive(env, (p[0], p[1], 0.025), -1.0, 15)
    assert np.linalg.norm(env.ee_pos()[:2] - p[:2]) < 0.005
    _drive(env, (p[0], p[1], 0.025), 1.0, 5)  # close
    left, right = env.finger_contacts(obj)
    assert left and right
    assert abs(env.gripper_opening() - 0.05) < 0.002  # pads stop on the 5 cm cube
    _drive(env, (p[0], p[1], 0.2), 1.0, 15)  # lift
    _drive(env, (p[0] - 0.1, p[1] + 0.1, 0.2), 1.0, 15)  # carry sideways
    _drive(env, (p[0] - 0.1, p[1] + 0.1, 0.2), 1.0, 20)  # hold still for 2 s
    rel = env.body_pos(obj) - env.ee_pos()
    assert env.body_pos(obj)[2] > 0.17
    assert np.linalg.norm(rel) < 0.01, rel  # it did not slip
    assert np.linalg.norm(env.body_linvel(obj)) < 1e-2
    _drive(env, env.ee_pos(), -1.0, 15)  # open: it falls back to the table
    assert abs(env.body_pos(obj)[2] - 0.025) < 0.003
