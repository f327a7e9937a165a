"""MJCF generation for the built-in tabletop scene.

The world: a table whose top surface is the plane z = 0 (world origin at its centre, +x away from the
robot, +z up), a floating parallel gripper carried by a position-controlled "gantry" (three slide joints
for x/y/z and three hinges for yaw/pitch/roll, all meeting at the tool centre point between the finger
pads), free-body objects (cubes, cylinders) and free-body open-top containers (bowls, plates, boxes) built
from primitive geoms. Nothing is welded or attached: a grasp holds by finger friction only.

The gripper frame ("hand") is the identity rotation at home: fingers point down (-z), the fingers open and
close along the hand's y axis. The tool centre point (site ``ee``) is the origin of the hand body, so the
three slide joint positions *are* the world position of the tool centre point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim import rotations as rot

# --------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.30, 0.85),
    "yellow": (0.95, 0.82, 0.10),
    "orange": (0.98, 0.50, 0.08),
    "purple": (0.55, 0.22, 0.72),
    "white": (0.92, 0.92, 0.90),
    "pink": (0.96, 0.55, 0.70),
    "cyan": (0.15, 0.78, 0.82),
    "black": (0.10, 0.10, 0.11),
}

OBJECT_COLORS = ("red", "green", "blue", "yellow", "orange", "purple")
CONTAINER_COLORS = ("white", "pink", "cyan", "black", "blue", "green")


@dataclass(frozen=True)
class ObjectKind:
    name: str
    half_height: float  # centre height above the table when upright
    half_width: float  # half the width the fingers close on
    radius: float  # horizontal bounding radius (for layout spacing)
    mass: float


OBJECT_KINDS: dict[str, ObjectKind] = {
    "cube": ObjectKind("cube", 0.025, 0.025, 0.0354, 0.06),
    "cylinder": ObjectKind("cylinder", 0.025, 0.025, 0.025, 0.06),
}


@dataclass(frozen=True)
class ContainerKind:
    name: str
    preposition: str  # "in" or "on"
    shape: str  # "round" or "square"
    inner: float  # inner radius (round) or inner half side (square) at floor level
    floor: float  # height of the inner floor surface above the container origin
    rim: float  # height of the rim top above the container origin
    radius: float  # horizontal bounding radius (for layout spacing)
    mass: float


CONTAINER_KINDS: dict[str, ContainerKind] = {
    "bowl": ContainerKind("bowl", "in", "round", 0.066, 0.01, 0.045, 0.095, 0.35),
    "plate": ContainerKind("plate", "on", "round", 0.082, 0.008, 0.02, 0.115, 0.35),
    "box": ContainerKind("box", "in", "square", 0.066, 0.01, 0.06, 0.105, 0.45),
}

# Gripper geometry (metres).
# Wide fingers on a wide stroke: pads 10 cm apart when open and 4 cm wide, so a 5 cm object is caught from
# ±2.5 cm off along the opening and ±3 cm along the pads: a small policy's few-cm errors still grasp.
FINGER_OPEN = 0.05  # each finger's travel
FINGER_HALF = (0.02, 0.006, 0.025)  # finger box half sizes (x, y thickness, z)
FINGER_Z = 0.005  # finger box centre above the tool centre point
FINGERTIP_BELOW_TCP = FINGER_HALF[2] - FINGER_Z  # 0.02: fingertips are this far below the TCP
PALM_Z = 0.04
TABLE_HALF = (0.45, 0.55)
TABLE_THICKNESS = 0.04
TABLE_HEIGHT = 0.75  # floor is this far below the table top (only visual)

# Gantry joints, in qpos/ctrl order.
ARM_JOINTS = ("arm_x", "arm_y", "arm_z", "arm_yaw", "arm_pitch", "arm_roll")
FINGER_JOINTS = ("finger_left", "finger_right")


# --------------------------------------------------------------------------------------------------
# Layout description
# --------------------------------------------------------------------------------------------------


@dataclass
class ObjectSpec:
    name: str  # body name, e.g. "obj0"
    kind: str  # key of OBJECT_KINDS
    color: str  # key of COLORS
    xy: tuple[float, float]
    yaw: float = 0.0

    @property
    def description(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass
class ContainerSpec:
    name: str  # body name, e.g. "con0"
    kind: str  # key of CONTAINER_KINDS
    color: str
    xy: tuple[float, float]
    yaw: float = 0.0

    @property
    def description(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass
class Layout:
    objects: list[ObjectSpec] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)
    gripper_start: tuple[float, float, float] = (-0.15, 0.0, 0.25)


# --------------------------------------------------------------------------------------------------
# MJCF helpers
# --------------------------------------------------------------------------------------------------


def _f(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _rgba(color: str, alpha: float = 1.0) -> str:
    return _f((*COLORS[color], alpha))


def lookat_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MuJoCo camera ``xyaxes`` for a camera at ``pos`` looking at ``target`` (both in the parent frame)."""
    pos, target, up = (np.asarray(v, dtype=np.float64) for v in (pos, target, up))
    z = pos - target  # cameras look along their -z
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return _f((*x, *y))


def _ring_walls(
    prefix: str,
    radius: float,
    z0: float,
    height: float,
    thickness: float,
    tilt: float,
    segments: int,
    material: str,
    mass_each: float,
) -> list[str]:
    """Walls of a round container: ``segments`` boxes around a circle, tilted outward by ``tilt``."""
    out = []
    r_top = radius + thickness + height * math.sin(tilt)
    half_len = math.tan(math.pi / segments) * r_top * 1.05
    r_c = radius + 0.5 * thickness + 0.5 * height * math.sin(tilt)
    z_c = z0 + 0.5 * height * math.cos(tilt)
    for i in range(segments):
        theta = 2 * math.pi * i / segments
        q = rot.quat_mul(rot.axis_quat((0, 0, 1), theta), rot.axis_quat((0, 1, 0), tilt))
        pos = (r_c * math.cos(theta), r_c * math.sin(theta), z_c)
        out.append(
            f'<geom name="{prefix}_wall{i}" type="box" size="{_f((thickness / 2, half_len, height / 2))}" '
            f'pos="{_f(pos)}" quat="{_f(q)}" material="{material}" mass="{mass_each:.4g}" class="container"/>'
        )
    return out


def _container_geoms(spec: ContainerSpec) -> list[str]:
    kind = CONTAINER_KINDS[spec.kind]
    mat = f"mat_{spec.name}"
    n = spec.name
    if spec.kind == "bowl":
        floor_t = kind.floor
        geoms = [
            f'<geom name="{n}_floor" type="cylinder" size="{_f((kind.inner + 0.004, floor_t / 2))}" '
            f'pos="0 0 {floor_t / 2:.6g}" material="{mat}" mass="0.12" class="container"/>'
        ]
        geoms += _ring_walls(
            n, kind.inner, 0.0, (kind.rim - 0.0) / math.cos(0.45), 0.006, 0.45, 14, mat, (kind.mass - 0.12) / 14
        )
        return geoms
    if spec.kind == "plate":
        floor_t = kind.floor
        geoms = [
            f'<geom name="{n}_floor" type="cylinder" size="{_f((kind.inner + 0.004, floor_t / 2))}" '
            f'pos="0 0 {floor_t / 2:.6g}" material="{mat}" mass="0.2" class="container"/>'
        ]
        geoms += _ring_walls(
            n, kind.inner, 0.0, (kind.rim - 0.0) / math.cos(1.0), 0.005, 1.0, 18, mat, (kind.mass - 0.2) / 18
        )
        return geoms
    if spec.kind == "box":
        t = 0.006
        h = kind.rim
        a = kind.inner
        geoms = [
            f'<geom name="{n}_floor" type="box" size="{_f((a + t, a + t, kind.floor / 2))}" '
            f'pos="0 0 {kind.floor / 2:.6g}" material="{mat}" mass="0.15" class="container"/>'
        ]
        m_wall = (kind.mass - 0.15) / 4
        walls = [
            ((a + t / 2, 0, h / 2), (t / 2, a + t, h / 2)),
            ((-a - t / 2, 0, h / 2), (t / 2, a + t, h / 2)),
            ((0, a + t / 2, h / 2), (a, t / 2, h / 2)),
            ((0, -a - t / 2, h / 2), (a, t / 2, h / 2)),
        ]
        for i, (pos, size) in enumerate(walls):
            geoms.append(
                f'<geom name="{n}_wall{i}" type="box" size="{_f(size)}" pos="{_f(pos)}" material="{mat}" '
                f'mass="{m_wall:.4g}" class="container"/>'
            )
        return geoms
    raise ValueError(f"unknown container kind {spec.kind!r}")


def _object_geom(spec: ObjectSpec) -> str:
    kind = OBJECT_KINDS[spec.kind]
    mat = f"mat_{spec.name}"
    if spec.kind == "cube":
        s = kind.half_width
        return (
            f'<geom name="{spec.name}_geom" type="box" size="{_f((s, s, s))}" material="{mat}" '
            f'mass="{kind.mass}" class="object"/>'
        )
    if spec.kind == "cylinder":
        return (
            f'<geom name="{spec.name}_geom" type="cylinder" size="{_f((kind.half_width, kind.half_height))}" '
            f'material="{mat}" mass="{kind.mass}" class="object"/>'
        )
    raise ValueError(f"unknown object kind {spec.kind!r}")


# --------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------

# The agent view looks down on the workspace from across the table, framing the area objects are placed in
# so that a 64² image still gives ≈ 1.3 px per cm there; the wrist camera looks past the fingers, not at the palm.
AGENTVIEW_POS = (0.40, 0.0, 0.70)
AGENTVIEW_TARGET = (-0.02, 0.0, 0.0)
AGENTVIEW_FOVY = 45
WRIST_CAM_POS = (0.07, 0.0, 0.055)  # in the hand frame
WRIST_CAM_TARGET = (0.03, 0.0, -0.12)
WRIST_FOVY = 80


def build_mjcf(
    layout: Layout,
    image_size: tuple[int, int] = (224, 224),
    timestep: float = 0.002,
    shadows: bool = False,
    view_size: int = 0,
) -> str:
    """Return the MJCF XML string for ``layout`` (the offscreen buffer fits the images and the viewing renders)."""
    h, w = image_size
    offw, offh = max(w, view_size, 64), max(h, view_size, 64)
    shadow = 1024 if shadows else 0

    materials = [
        '<material name="mat_table" rgba="0.62 0.48 0.34 1" specular="0.1" shininess="0.1"/>',
        '<material name="mat_floor" texture="tex_floor" texrepeat="6 6" rgba="1 1 1 1"/>',
        '<material name="mat_metal" rgba="0.55 0.57 0.60 1" specular="0.4" shininess="0.5"/>',
        '<material name="mat_dark" rgba="0.18 0.18 0.20 1" specular="0.2"/>',
        '<material name="mat_pad" rgba="0.25 0.25 0.27 1"/>',
    ]
    for o in layout.objects:
        materials.append(f'<material name="mat_{o.name}" rgba="{_rgba(o.color)}" specular="0.2" shininess="0.3"/>')
    for c in layout.containers:
        materials.append(f'<material name="mat_{c.name}" rgba="{_rgba(c.color)}" specular="0.3" shininess="0.4"/>')

    bodies = []
    for o in layout.objects:
        kind = OBJECT_KINDS[o.kind]
        q = rot.axis_quat((0, 0, 1), o.yaw)
        bodies.append(
            f'<body name="{o.name}" pos="{_f((o.xy[0], o.xy[1], kind.half_height + 0.001))}" quat="{_f(q)}">'
            f'<freejoint name="{o.name}_joint"/>{_object_geom(o)}</body>'
        )
    for c in layout.containers:
        q = rot.axis_quat((0, 0, 1), c.yaw)
        bodies.append(
            f'<body name="{c.name}" pos="{_f((c.xy[0], c.xy[1], 0.0005))}" quat="{_f(q)}">'
            f'<freejoint name="{c.name}_joint"/>{"".join(_container_geoms(c))}</body>'
        )

    fx, fy, fz = FINGER_HALF
    wrist_xyaxes = lookat_xyaxes(WRIST_CAM_POS, WRIST_CAM_TARGET, up=(1.0, 0.0, 0.0))
    agent_xyaxes = lookat_xyaxes(AGENTVIEW_POS, AGENTVIEW_TARGET)
    sx, sy, sz = layout.gripper_start

    return f"""
<mujoco model="tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <size memory="20M"/>
  <visual>
    <global offwidth="{offw}" offheight="{offh}"/>
    <quality shadowsize="{shadow}" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
    <map znear="0.01" zfar="8"/>
  </visual>
  <asset>
    <texture name="tex_sky" type="skybox" builtin="gradient" rgb1="0.62 0.68 0.74" rgb2="0.22 0.24 0.27"
             width="32" height="192"/>
    <texture name="tex_floor" type="2d" builtin="checker" rgb1="0.32 0.33 0.36" rgb2="0.26 0.27 0.30"
             width="64" height="64"/>
    {"".join(materials)}
  </asset>
  <default>
    <geom solref="0.004 1" solimp="0.95 0.99 0.001"/>
    <default class="object">
      <geom condim="4" friction="1.0 0.01 0.001" priority="1"/>
    </default>
    <default class="container">
      <geom condim="3" friction="0.8 0.005 0.0001"/>
    </default>
    <default class="visual">
      <geom contype="0" conaffinity="0" group="1" density="0"/>
    </default>
    <default class="pad">
      <geom condim="4" friction="1.5 0.02 0.002" priority="2"/>
    </default>
  </default>
  <worldbody>
    <light name="key" pos="0.3 -0.4 1.6" dir="-0.2 0.25 -1" diffuse="0.55 0.55 0.55" specular="0.15 0.15 0.15"
           castshadow="{str(shadows).lower()}"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 {-TABLE_HEIGHT}" material="mat_floor"/>
    <geom name="table" type="box" size="{_f((*TABLE_HALF, TABLE_THICKNESS / 2))}" pos="0 0 {-TABLE_THICKNESS / 2}"
          material="mat_table" friction="0.8 0.005 0.0001"/>
    <geom name="table_leg" type="box" size="0.35 0.45 {(TABLE_HEIGHT - TABLE_THICKNESS) / 2:.4g}"
          pos="0 0 {-(TABLE_HEIGHT + TABLE_THICKNESS) / 2:.4g}" material="mat_dark" class="visual"/>
    <camera name="agentview" pos="{_f(AGENTVIEW_POS)}" xyaxes="{agent_xyaxes}" fovy="{AGENTVIEW_FOVY}"/>

    <body name="arm_base_x" gravcomp="1">
      <joint name="arm_x" type="slide" axis="1 0 0" range="-1 1" damping="5" armature="0.1"/>
      <inertial pos="0 0 0" mass="0.3" diaginertia="1e-3 1e-3 1e-3"/>
      <body name="arm_base_y" gravcomp="1">
        <joint name="arm_y" type="slide" axis="0 1 0" range="-1 1" damping="5" armature="0.1"/>
        <inertial pos="0 0 0" mass="0.3" diaginertia="1e-3 1e-3 1e-3"/>
        <body name="arm_base_z" gravcomp="1">
          <joint name="arm_z" type="slide" axis="0 0 1" range="-0.2 1" damping="5" armature="0.1"/>
          <inertial pos="0 0 0" mass="0.3" diaginertia="1e-3 1e-3 1e-3"/>
          <body name="arm_yaw" gravcomp="1">
            <joint name="arm_yaw" type="hinge" axis="0 0 1" range="-4 4" damping="0.2" armature="0.02"/>
            <inertial pos="0 0 0" mass="0.05" diaginertia="1e-4 1e-4 1e-4"/>
            <body name="arm_pitch" gravcomp="1">
              <joint name="arm_pitch" type="hinge" axis="0 1 0" range="-1.2 1.2" damping="0.2" armature="0.02"/>
              <inertial pos="0 0 0" mass="0.05" diaginertia="1e-4 1e-4 1e-4"/>
              <body name="hand" gravcomp="1">
                <joint name="arm_roll" type="hinge" axis="1 0 0" range="-1.2 1.2" damping="0.2" armature="0.02"/>
                <site name="ee" pos="0 0 0" size="0.004" rgba="1 0 0 0" group="4"/>
                <geom name="palm" type="box" size="0.024 0.068 0.01" pos="0 0 {PALM_Z}" material="mat_metal"
                      mass="0.4"/>
                <geom name="wrist" type="cylinder" size="0.024 0.05" pos="0 0 {PALM_Z + 0.06}" material="mat_dark"
                      mass="0.1"/>
                <geom name="wrist_mount" type="box" size="0.025 0.01 0.006" pos="0.035 0 {PALM_Z + 0.038}"
                      material="mat_dark" class="visual"/>
                <geom name="wrist_cam_body" type="box" size="0.012 0.018 0.012"
                      pos="{_f(WRIST_CAM_POS[:2])} {WRIST_CAM_POS[2] + 0.014}" material="mat_dark" class="visual"/>
                <camera name="wrist" pos="{_f(WRIST_CAM_POS)}" xyaxes="{wrist_xyaxes}" fovy="{WRIST_FOVY}"/>
                <body name="finger_left" gravcomp="1">
                  <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="80"
                         armature="0.05"/>
                  <geom name="finger_left_pad" type="box" size="{_f((fx, fy, fz))}" pos="0 {fy} {FINGER_Z}"
                        material="mat_pad" mass="0.03" class="pad"/>
                </body>
                <body name="finger_right" gravcomp="1">
                  <joint name="finger_right" type="slide" axis="0 1 0" range="{-FINGER_OPEN} 0" damping="80"
                         armature="0.05"/>
                  <geom name="finger_right_pad" type="box" size="{_f((fx, fy, fz))}" pos="0 {-fy} {FINGER_Z}"
                        material="mat_pad" mass="0.03" class="pad"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    {"".join(bodies)}
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
  </contact>
  <actuator>
    <position name="act_x" joint="arm_x" kp="5000" dampratio="1" ctrlrange="-1 1"/>
    <position name="act_y" joint="arm_y" kp="5000" dampratio="1" ctrlrange="-1 1"/>
    <position name="act_z" joint="arm_z" kp="5000" dampratio="1" ctrlrange="-0.2 1"/>
    <position name="act_yaw" joint="arm_yaw" kp="60" dampratio="1" ctrlrange="-4 4"/>
    <position name="act_pitch" joint="arm_pitch" kp="60" dampratio="1" ctrlrange="-1.2 1.2"/>
    <position name="act_roll" joint="arm_roll" kp="60" dampratio="1" ctrlrange="-1.2 1.2"/>
    <position name="act_finger_left" joint="finger_left" kp="600" dampratio="1" ctrlrange="0 {FINGER_OPEN}"
              forcerange="-12 12"/>
    <position name="act_finger_right" joint="finger_right" kp="600" dampratio="1" ctrlrange="{-FINGER_OPEN} 0"
              forcerange="-12 12"/>
  </actuator>
  <keyframe>
    <key name="home" qpos="{_f((sx, sy, sz, 0, 0, 0, FINGER_OPEN, -FINGER_OPEN))}{_free_qpos(layout)}"
         ctrl="{_f((sx, sy, sz, 0, 0, 0, FINGER_OPEN, -FINGER_OPEN))}"/>
  </keyframe>
</mujoco>
"""


def _free_qpos(layout: Layout) -> str:
    parts = []
    for o in layout.objects:
        kind = OBJECT_KINDS[o.kind]
        parts.append(_f((o.xy[0], o.xy[1], kind.half_height + 0.001, *rot.axis_quat((0, 0, 1), o.yaw))))
    for c in layout.containers:
        parts.append(_f((c.xy[0], c.xy[1], 0.0005, *rot.axis_quat((0, 0, 1), c.yaw))))
    return "".join(" " + p for p in parts)
