"""What a training run is: the recipe (paper defaults per protocol) and where it reads and writes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from fsanet.errors import DataError

# The paper's recipe (Yang et al., CVPR 2019, section 4.1): Adam, lr 1e-3 divided by 10 at
# epochs 30 and 60, 90 epochs, batch 16 on 300W-LP (protocol 1) and 8 on BIWI (protocol 2)
PAPER_BATCH = {1: 16, 2: 8}
PAPER_LR = 1e-3
# Adam's first steps move every weight by about the learning rate: at the paper's 1e-3 the
# quantized authors' model drifted 0.66 degrees from the float one after 63 steps (0.23 before),
# at 1e-5 it came to 0.21 (docs/training.md, QAT)
QAT_LR = 1e-5
DEFAULT_SYNTHETIC = 20000  # faces drawn by `--data synthetic` without a count
BIWI_TRAIN_FRACTION = 0.7

# fields that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"workers", "progress", "resume", "device", "amp", "stop_after"}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `batch` is the global batch: per process = batch / world size."""

    data: str
    output: str
    val: tuple[str, ...] = ()
    protocol: int = 1
    variant: str | None = None  # None: from `init`, else fsanet-1x1-capsule
    init: str | None = None  # checkpoint to fine-tune (e.g. from `fsanet import-keras`)
    epochs: int = 90
    lr: float | None = None  # None: the paper's 1e-3, or QAT_LR for quantization-aware fine-tuning
    milestones: tuple[int, ...] = (30, 60)
    gamma: float = 0.1
    batch: int | None = None  # None: the paper's batch for the protocol
    seed: int = 0
    augment: bool = True
    scale_range: tuple[float, float] = (0.8, 1.2)
    shift: float = 0.1  # random shift of the crop box, as a fraction of its size
    limit: int | None = None  # use only the first N training faces (quick runs)
    val_limit: int | None = None
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    device: str | None = None  # None: this process's CUDA device if there is one, else cpu
    amp: bool = True  # mixed precision where it applies (CUDA only)
    progress: bool | None = None  # tqdm's disable=None: bars only on a terminal
    resume: bool = False
    stop_after: int | None = None  # end this invocation after that epoch (resume later)
    qat: bool = False  # quantization-aware fine-tuning of `init` (NNCF fake quantizers, see train/qat.py)
    calib: str | None = None  # calibration set (.npz) that sets the quantizers' initial ranges
    distill: bool = False  # QAT targets: the float `init` model's angles on each batch, not the labels

    def __post_init__(self):
        if self.lr is None:  # the policy lives here, so the Python API and the CLI agree
            object.__setattr__(self, "lr", QAT_LR if self.qat else PAPER_LR)
        if not self.lr > 0:
            raise DataError(f"lr {self.lr}: the learning rate must be a positive number")
        if self.protocol not in PAPER_BATCH:
            raise DataError(f"protocol {self.protocol}: use 1 (300W-LP -> AFLW2000/BIWI) or 2 (BIWI 70/30)")
        if self.epochs < 1 or (self.batch is not None and self.batch < 1):
            raise DataError(f"epochs ({self.epochs}) and batch ({self.batch}) must be positive")
        if self.qat and not (self.init and self.calib):
            missing = "--init model.pt (the trained float model)" if not self.init else "--calib calib.npz"
            raise DataError(f"--qat needs {missing}; build a calibration set with `fsanet calib build`")
        if self.distill and not self.qat:
            raise DataError("--distill is for --qat (the float --init model teaches its quantized copy)")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise DataError(f"scale_range {self.scale_range}: needs 0 < low <= high")

    @property
    def global_batch(self) -> int:
        return self.batch or PAPER_BATCH[self.protocol]

    @property
    def run_dir(self) -> Path:
        return Path(self.output)

    def to_dict(self) -> dict:
        return asdict(self) | {"global_batch": self.global_batch}

    def save(self, path: Path) -> None:
        from fsanet.files import write_text

        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def differences(self, stored: dict) -> dict:
        """Fields of the recipe that differ from a stored run's (resume refuses those)."""
        out = {}
        for f in fields(self):
            if f.name in RESUMABLE_CHANGES or f.name not in stored:
                continue
            mine, theirs = _plain(getattr(self, f.name)), _plain(stored[f.name])
            if mine != theirs:
                out[f.name] = (theirs, mine)
        return out

    def with_changes(self, **changes) -> TrainConfig:
        return replace(self, **changes)


def _plain(x):
    """Tuples as lists, as they come back from JSON."""
    return [_plain(v) for v in x] if isinstance(x, (list, tuple)) else x
