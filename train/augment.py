"""Augmentation (the paper: random crop and random scaling 0.8-1.2) and the torch datasets.

With the full photo (`FaceSet.raw`), the landmark box is scaled and shifted at random and the
official crop (0.6 margin, clip, resize) is taken around it, so zooming out shows real context.
Without it, the 64x64 crop itself is scaled and shifted (edge pixels repeated).
Every random draw comes from a generator seeded by (seed, epoch, index): the samples of an
epoch do not depend on worker processes, ranks or on where a run was resumed.
"""

from __future__ import annotations

import numpy as np
import torch

from fsanet.data import FaceSet
from fsanet.preprocess import INPUT_SIZE, MARGIN, crop_box, expand_box, landmark_box


def jitter(rng: np.random.Generator, scale_range: tuple[float, float], shift: float) -> tuple[float, float, float]:
    """A random box scale and a shift (dx, dy) as fractions of the box size."""
    s = rng.uniform(*scale_range)
    dx, dy = rng.uniform(-shift, shift, 2)
    return s, dx, dy


def crop_raw(image: np.ndarray, landmarks, s: float, dx: float, dy: float) -> np.ndarray:
    """The official crop around the landmark box scaled by s and shifted by (dx, dy) box sizes."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
    box = (cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2)
    return crop_box(image, expand_box(box, image.shape, MARGIN))


def warp_crop(crop: np.ndarray, s: float, dx: float, dy: float) -> np.ndarray:
    """The same jitter applied to a finished 64x64 crop: a box s times larger shows the face
    1/s times as large; the face box spans about 1/(1 + 2 * margin) of the crop."""
    import cv2

    face = INPUT_SIZE / (1 + 2 * MARGIN)
    c = (INPUT_SIZE - 1) / 2
    m = np.array([[1 / s, 0, c - c / s - dx * face / s], [0, 1 / s, c - c / s - dy * face / s]], np.float32)
    return cv2.warpAffine(crop, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def to_tensor(crop: np.ndarray) -> torch.Tensor:
    """(64, 64, 3) BGR uint8 -> (3, 64, 64) float32 0..255, the model input (no normalisation)."""
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32))


class TrainFaces(torch.utils.data.Dataset):
    """Augmented (crop, pose) pairs; set `epoch` before each epoch's loader is iterated."""

    def __init__(self, faces: FaceSet, seed: int, augment: bool, scale_range=(0.8, 1.2), shift: float = 0.1):
        self.faces, self.seed, self.augment = faces, seed, augment
        self.scale_range, self.shift = tuple(scale_range), shift
        # unlabelled faces (distillation: the teacher's angles are the targets) get zeros
        poses = faces.poses if faces.poses is not None else np.zeros((len(faces), 3))
        self.poses = torch.from_numpy(np.asarray(poses, dtype=np.float32))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensor(self.crop(i)), self.poses[i]

    def crop(self, i: int) -> np.ndarray:
        if not self.augment:
            return self.faces.load(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        s, dx, dy = jitter(rng, self.scale_range, self.shift)
        if self.faces.raw is not None:
            image, landmarks = self.faces.raw(i)
            try:
                return crop_raw(image, landmarks, s, dx, dy)
            except ValueError:  # a box pushed fully off the image: jitter the official crop instead
                pass
        return warp_crop(self.faces.load(i), s, dx, dy)


class EvalFaces(TrainFaces):
    """The official crops, unaugmented."""

    def __init__(self, faces: FaceSet):
        super().__init__(faces, 0, augment=False)
