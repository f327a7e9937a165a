"""Offscreen RGB rendering of named cameras.

One GL context lives as long as the renderer; the MuJoCo render context (textures, meshes, the offscreen
framebuffer) is rebuilt when a new model is bound, which the tasks do on every reset because the set of
objects changes with the seed.

Backend: MuJoCo picks the GL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported. When it is unset
and there is no X display, :func:`default_gl_backend` sets ``osmesa`` (software, needs Debian
``libosmesa6``) so rendering works on any CPU host; export ``MUJOCO_GL=egl`` to use a GPU.
"""

from __future__ import annotations

import os
import sys


def default_gl_backend() -> str:
    """Choose ``MUJOCO_GL`` if nobody did. Must run before the first ``import mujoco`` to take effect."""
    if not os.environ.get("MUJOCO_GL") and "mujoco" not in sys.modules:
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "osmesa"
    return os.environ.get("MUJOCO_GL", "")


default_gl_backend()

import mujoco  # noqa: E402
import numpy as np  # noqa: E402


class CameraRenderer:
    """Renders RGB images of size (height, width) from named cameras of the bound model."""

    def __init__(self, height: int, width: int):
        self.height = int(height)
        self.width = int(width)
        self._gl = mujoco.GLContext(self.width, self.height)
        self._gl.make_current()
        self._model = None
        self._con = None
        self._scene = None
        self._opt = mujoco.MjvOption()
        self._pert = mujoco.MjvPerturb()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._cam_ids: dict[str, int] = {}

    def bind(self, model: mujoco.MjModel) -> None:
        if model.vis.global_.offwidth < self.width or model.vis.global_.offheight < self.height:
            raise ValueError("model offscreen buffer is smaller than the requested image size")
        self._gl.make_current()
        if self._con is not None:
            self._con.free()
        self._model = model
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scene = mujoco.MjvScene(model, maxgeom=max(200, 2 * model.ngeom))
        self._cam_ids = {}

    def camera_id(self, name: str) -> int:
        if name not in self._cam_ids:
            cid = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                raise KeyError(f"no camera named {name!r}")
            self._cam_ids[name] = cid
        return self._cam_ids[name]

    def render(self, data: mujoco.MjData, camera: str, out: np.ndarray | None = None) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("bind a model first")
        self._gl.make_current()
        self._cam.fixedcamid = self.camera_id(camera)
        mujoco.mjv_updateScene(
            self._model, data, self._opt, self._pert, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._con)
        buf = np.empty((self.height, self.width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(buf, None, self._rect, self._con)
        # OpenGL's origin is the bottom-left corner: flip rows so row 0 is the top of the image.
        if out is None:
            return np.ascontiguousarray(buf[::-1])
        out[...] = buf[::-1]
        return out

    def close(self) -> None:
        if self._con is not None:
            self._gl.make_current()
            self._con.free()
            self._con = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None
        self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
