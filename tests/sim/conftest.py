"""Shared setup for the simulation tests: software rendering unless the caller chose a GL backend."""

import os
import sys

if not os.environ.get("MUJOCO_GL") and "mujoco" not in sys.modules:
    os.environ["MUJOCO_GL"] = "osmesa"  # CPU rendering; needs Debian libosmesa6
