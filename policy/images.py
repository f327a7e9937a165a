"""Camera images to what the network reads: uint8 HxWx3 → resize with padding → float in [-1, 1].

resize_with_pad keeps the aspect ratio and pads with black, centred, as openpi does; openpi resizes with PIL
bilinear, we use OpenCV (INTER_AREA when shrinking, bilinear when growing), so pixels can differ by a few levels.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H,W,3] → uint8 [height,width,3], aspect ratio kept, black borders split evenly."""
    cur_h, cur_w = image.shape[:2]
    if (cur_h, cur_w) == (height, width):
        return image
    ratio = max(cur_w / width, cur_h / height)
    new_h, new_w = max(1, int(cur_h / ratio)), max(1, int(cur_w / ratio))
    interp = cv2.INTER_AREA if ratio > 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out
