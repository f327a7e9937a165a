"""Image augmentation for training, after openpi's: views from fixed cameras get a random 95% crop (resized
back) and a rotation within ±5°; every view gets colour jitter (brightness ±30%, contrast ±40%, saturation
±50%). Wrist views are not cropped or rotated: their geometry relative to the gripper is what the policy reads.

Runs on the host on uint8 images at model resolution, drawing from the caller's generator, so a batch's
augmentation is fixed by the step's seed and a resumed run sees the same images.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_FRACTION = 0.95
MAX_ROTATION_DEG = 5.0
BRIGHTNESS = 0.3
CONTRAST = 0.4
SATURATION = 0.5
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def augment_image(image: np.ndarray, rng: np.random.Generator, *, geometric: bool) -> np.ndarray:
    """uint8 [H,W,3] → uint8 [H,W,3]; `geometric` adds the crop and rotation (views from fixed cameras)."""
    height, width = image.shape[:2]
    out = image
    if geometric:
        crop_h, crop_w = int(height * CROP_FRACTION), int(width * CROP_FRACTION)
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        out = cv2.resize(out[top : top + crop_h, left : left + crop_w], (width, height), interpolation=cv2.INTER_LINEAR)
        angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
        rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        out = cv2.warpAffine(out, rotation, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    x = out.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)
    mean = float((x @ _GRAY).mean())
    x = (x - mean) * rng.uniform(1 - CONTRAST, 1 + CONTRAST) + mean
    gray = (x @ _GRAY)[..., None]
    x = (x - gray) * rng.uniform(1 - SATURATION, 1 + SATURATION) + gray
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
