"""Training and validation sets per protocol, with the seeded BIWI split by subject.

Protocol 1: train on 300W-LP, validate/test on AFLW2000 and BIWI (each given with `val`).
Protocol 2: BIWI 70/30 by subject; without `val` the split is drawn here from the seed and
written into the run folder, so the test subjects of a run are always on record.
All readers apply the |angle| <= 99 filter and count what they drop; an empty or unlabelled
set is refused, never turned into a smaller run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from fsanet.train.config import BIWI_TRAIN_FRACTION, DEFAULT_SYNTHETIC, TrainConfig

from fsanet.data import FaceSet, open_faces
from fsanet.errors import DataError


def open_set(spec: str, labelled: bool = True) -> FaceSet:
    """A labelled, non-empty face set from a path, `synthetic` or `synthetic:N[:seed]`
    (`labelled=False`: unlabelled faces too, for distillation)."""
    faces = open_faces(f"synthetic:{DEFAULT_SYNTHETIC}" if spec == "synthetic" else spec)
    if faces.poses is None and labelled:
        raise DataError(f"{faces.source}: has no pose labels; training needs a labelled set (.mat, BIWI, .npz)")
    if len(faces) == 0:
        raise DataError(f"{faces.describe()}: no faces left to train or validate on")
    return faces


def subset(faces: FaceSet, idx: np.ndarray, what: str) -> FaceSet:
    """The faces at `idx`, keeping lazy loading and the reader's drop counts."""
    idx = np.asarray(idx, dtype=np.int64)
    raw = None if faces.raw is None else (lambda i, r=faces.raw: r(int(idx[i])))
    return replace(
        faces,
        source=f"{faces.source} ({what})",
        names=[faces.names[j] for j in idx],
        loader=lambda i, load=faces.loader: load(int(idx[i])),
        poses=None if faces.poses is None else faces.poses[idx],
        raw=raw,
    )


def subject_split(faces: FaceSet, seed: int, fraction: float = BIWI_TRAIN_FRACTION) -> dict:
    """Protocol 2: subjects (BIWI folders) shuffled with `seed`, the first 70% for training."""
    from fsanet.data.biwi import subject_of

    subjects = sorted({subject_of(n) for n in faces.names})
    if len(subjects) < 2 or "" in subjects:
        raise DataError(
            f"{faces.source}: protocol 2 splits BIWI by subject folder (hpdb/NN/...), found {len(subjects)} "
            "subject(s); pass a BIWI folder, or the held-out set with --val"
        )
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_train = min(max(1, round(fraction * len(subjects))), len(subjects) - 1)
    train = sorted(subjects[i] for i in order[:n_train])
    return {"seed": seed, "fraction": fraction, "train": train, "test": sorted(set(subjects) - set(train))}


def by_subjects(faces: FaceSet, subjects: list[str], what: str) -> FaceSet:
    from fsanet.data.biwi import subject_of

    keep = set(subjects)
    return subset(faces, np.array([i for i, n in enumerate(faces.names) if subject_of(n) in keep]), what)


def default_val(spec: str) -> str | None:
    """A synthetic training set validates on other synthetic heads (another seed) by default."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        parts = spec.split(":")
        seed = int(parts[2]) if len(parts) > 2 else 0
        return f"synthetic:{max(200, min(2000, DEFAULT_SYNTHETIC // 10))}:{seed + 1}"
    return None


def open_sets(cfg: TrainConfig) -> tuple[FaceSet, dict[str, FaceSet], dict | None]:
    """Training set, named validation sets (the first one picks the best checkpoint), split."""
    train = open_set(cfg.data, labelled=not cfg.distill)
    split = None
    vals = list(cfg.val) or [v for v in (default_val(cfg.data),) if v]
    if cfg.protocol == 2 and not vals:
        split = subject_split(train, cfg.seed)
        whole = train
        train = by_subjects(whole, split["train"], f"protocol 2 train, {len(split['train'])} subjects")
        val_sets = {"biwi-test": by_subjects(whole, split["test"], f"protocol 2 test, {len(split['test'])} subjects")}
    elif not vals:
        raise DataError(
            f"protocol {cfg.protocol}: give the validation set(s) with --val (protocol 1: AFLW2000 and/or BIWI)"
        )
    else:
        val_sets = {_name(v, i): open_set(v) for i, v in enumerate(vals)}
    if cfg.limit is not None:
        train = subset(train, np.arange(min(cfg.limit, len(train))), f"first {cfg.limit}")
    if cfg.val_limit is not None:
        n = cfg.val_limit
        val_sets = {k: subset(v, np.arange(min(n, len(v))), f"first {n}") for k, v in val_sets.items()}
    for name, faces in [("train", train), *val_sets.items()]:
        if len(faces) == 0:
            raise DataError(f"{name}: {faces.describe()}: no faces left")
    return train, val_sets, split


def _name(spec: str, i: int) -> str:
    stem = Path(spec.split("@")[0]).name or spec
    return f"{i}-{stem}" if i else stem


def describe(train: FaceSet, vals: dict[str, FaceSet], split: dict | None) -> dict:
    """What the run trains and validates on, with every drop count (printed and stored)."""

    def one(f: FaceSet) -> dict:
        return {"source": f.source, "count": len(f), "dropped": f.dropped, "text": f.describe()}

    return {"train": one(train), "val": {k: one(v) for k, v in vals.items()}, "protocol2_split": split}


def write_description(path: Path, info: dict) -> None:
    from fsanet.files import write_text

    write_text(path, json.dumps(info, indent=2) + "\n")
