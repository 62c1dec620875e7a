"""People in a frame: OpenCV's Haar cascade for frontal faces, shipped inside its wheel.

    FaceCounter()(rgb)  -> number of distinct faces in an RGB frame (uint8 [H, W, 3])

The ImageNet classifier has almost no person classes (it names the suit, the bow tie, the uniform), so the
evidence tower asks a face detector whether someone is in view. Frames are scaled so their longer side is
`max_side` before detection (cost, and the cascades' fixed window of 20-24 px).
"""

from __future__ import annotations

import numpy as np

INSTALL = "pip install 'opencv-python-headless>=4.8,<5' (OpenCV 5 wheels no longer ship the Haar cascades)"


def _cascade(name: str):
    try:
        import cv2
    except ImportError as err:
        raise ImportError(f"the face detector needs OpenCV: {INSTALL}") from err
    path = f"{cv2.data.haarcascades}{name}"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"OpenCV has no Haar cascade {path}: {INSTALL}")
    return cascade


class FaceCounter:
    """Counts frontal faces (OpenCV's default frontal cascade on the equalised grey frame). Settings chosen on
    stamp scenes (training material, no faces: every hit is a false one): scale step 1.15, 6 neighbours and faces
    of at least a tenth of the shorter side gave no false hit in 80 frames at 17 ms a frame, where 1.1 / 5 / 24 px
    gave 3 in 80 at 30 ms; the profile cascade doubled the cost."""

    def __init__(self, max_side: int = 320, min_neighbors: int = 6, min_face: float = 0.1,
                 scale_factor: float = 1.15):
        self.frontal = _cascade("haarcascade_frontalface_default.xml")
        self.max_side, self.min_neighbors, self.min_face = max_side, min_neighbors, min_face
        self.scale_factor = scale_factor

    def boxes(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        side = max(20, int(self.min_face * min(gray.shape)))
        found = self.frontal.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(side, side))
        return [tuple(int(v) for v in box) for box in found]

    def __call__(self, rgb: np.ndarray) -> int:
        return len(self.boxes(rgb))
