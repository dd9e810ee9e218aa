"""The runtime contract, written once: lifecycle, input checks, batching, the input format.

A backend implements `_load` and `_run` on an already validated float32 batch in the model's
own layout; everything else (checks, splitting batches for fixed-batch models, turning 64x64
BGR crops into the model's input format) lives here. Polygraphy's runners are the model.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, FsanetError, ModelError

# Faces per backend call: a caller's batch of 10,000 crops runs in pieces of this size, so the
# backend's activation memory stays bounded (the fusion takes about 1.6 MB per face).
MAX_CALL_BATCH = 256


@dataclass(frozen=True)
class InputFormat:
    """How a model wants its input: model_input = (crop in `colour` order - mean) / std."""

    layout: str = "NCHW"
    colour: str = "BGR"
    mean: float = 0.0
    std: float = 1.0
    size: int = 64

    @classmethod
    def from_manifest(cls, manifest: dict) -> InputFormat:
        i = manifest["input"]
        return cls(i["layout"], i["colour"], float(i["mean"]), float(i["std"]), int(i["shape"][-1]))

    @classmethod
    def parse(cls, spec: str) -> InputFormat:
        """'nhwc,bgr,mean=127.5,std=128' (any order; omitted fields keep their defaults)."""
        if not isinstance(spec, str):
            raise DataError(f"input format must be a string like 'nhwc,bgr,raw', got {type(spec).__name__}")
        fmt = cls()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = part.partition("=")
            key = key.lower()
            if key in ("nchw", "nhwc"):
                fmt = replace(fmt, layout=key.upper())
            elif key in ("bgr", "rgb"):
                fmt = replace(fmt, colour=key.upper())
            elif key in ("mean", "std") and value:
                fmt = replace(fmt, **{key: _number(spec, key, value)})
            elif key == "raw":
                fmt = replace(fmt, mean=0.0, std=1.0)
            else:
                raise DataError(
                    f"input format {spec!r}: cannot read {part!r}; use nchw|nhwc, bgr|rgb, raw, mean=X, std=Y"
                )
        return fmt

    def prepare(self, crops: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 3) BGR crops, uint8 or float 0..255 -> float32 model input."""
        from fsanet.preprocess import check_crops

        x = check_crops(crops).astype(np.float32)
        if self.colour == "RGB":
            x = x[..., ::-1]
        if self.mean or self.std != 1.0:
            x = (x - self.mean) / self.std
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def describe(self) -> str:
        scale = "raw 0..255" if not self.mean and self.std == 1.0 else f"(x-{self.mean:g})/{self.std:g}"
        return f"{self.layout} {self.colour} {scale}"


def _number(spec: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or (key == "std" and value == 0):
        need = "a finite non-zero number" if key == "std" else "a finite number"
        raise DataError(f"input format {spec!r}: {key}={text} must be {need}, e.g. mean=127.5,std=128")
    return value


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple
    dtype: str


class Runtime(ABC):
    """One loaded model on one backend. Use as a context manager or call `close()`."""

    backend = "base"

    def __init__(self, path: str | Path, input_format: InputFormat | None = None, manifest: dict | None = None):
        self.path = Path(path)
        self.closed = True  # until loaded
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such model file")
        self.manifest = manifest
        if input_format is None:
            if manifest is None:
                raise DataError(
                    f"{self.path}: has no fsanet manifest, so its input format is unknown; "
                    "give it, e.g. MODEL@nhwc,bgr,raw or MODEL@nchw,bgr,mean=127.5,std=128"
                )
            input_format = InputFormat.from_manifest(manifest)
        self.input_format = input_format
        self._load()
        self.closed = False
        self._check_io()

    # -- what a backend implements ------------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    def executes_on(self) -> str:
        """What actually runs the model, as the backend reports it (a provider, a delegate)."""
        return self.backend

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray: ...

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    def close(self) -> None:
        """Release the backend's resources (a backend extends this and calls it)."""
        self.closed = True

    # -- shared behaviour ---------------------------------------------------------------------
    def _check_io(self) -> None:
        """A model whose declared input or output cannot be FSA-Net's, given its input format,
        is refused at load time, saying what was found (dimensions not fixed are not judged)."""
        want = self.expected_shape(1)
        found = tuple(self.inputs[0].shape)
        fixed = [(w, f) for w, f in zip(want[1:], found[1:], strict=False) if isinstance(f, int) and f > 0]
        if len(found) != 4 or any(w != f for w, f in fixed):
            raise ModelError(
                f"{self.path.name}: input {self.inputs[0].name!r} has shape {found}; the format "
                f"{self.input_format.describe()} needs {('N', *want[1:])}; give the model's real format "
                "(MODEL@nhwc or MODEL@nchw) or use an FSA-Net model"
            )
        out = tuple(self.outputs[0].shape) if self.outputs else ()
        last = out[-1] if out else None
        if len(out) != 2 or (isinstance(last, int) and last > 0 and last != 3):
            raise ModelError(
                f"{self.path.name}: output {self.outputs[0].name if self.outputs else '?'!r} has shape {out}; "
                "expected (N, 3) angles (yaw, pitch, roll); is this a head-pose model?"
            )

    def _check_open(self) -> None:
        if getattr(self, "closed", True):
            raise DataError(f"{self.path.name}: this runtime is closed; open the model again with fsanet.runtimes.open")

    def _call(self, x: np.ndarray) -> np.ndarray:
        """One backend call, its failures as ModelError, its output checked to be (N, 3)."""
        try:
            y = self._run(x)
        except FsanetError:
            raise
        except Exception as e:  # each backend raises its own types (ORT's Fail, RuntimeError, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(f"{self.path.name}: {self.backend} failed to run it ({first})") from e
        y = np.asarray(y)
        if y.shape != (len(x), 3):
            raise ModelError(
                f"{self.path.name}: output has shape {y.shape} for {len(x)} faces; expected ({len(x)}, 3) "
                "angles (yaw, pitch, roll); is this a head-pose model?"
            )
        return y

    @property
    def precision(self) -> str:
        return (self.manifest or {}).get("precision", "unknown")

    @property
    def fixed_batch(self) -> int | None:
        b = self.inputs[0].shape[0]
        return b if isinstance(b, int) and b > 0 else None

    def expected_shape(self, batch: int) -> tuple:
        s = self.input_format.size
        return (batch, 3, s, s) if self.input_format.layout == "NCHW" else (batch, s, s, 3)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """A float32 batch in the model's layout -> (N, 3) angles (yaw, pitch, roll)."""
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise DataError(f"{self.path.name}: input must be float32, got {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != self.expected_shape(1)[1:]:
            raise DataError(
                f"{self.path.name}: input must be {self.expected_shape(1)[1:]} per face "
                f"({self.input_format.describe()}), got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise DataError(f"{self.path.name}: input contains NaN or infinite values")
        self._check_open()
        if len(x) == 0:
            return np.zeros((0, 3), np.float32)
        step = self.fixed_batch or MAX_CALL_BATCH  # a fixed-batch model runs a larger batch in pieces
        if len(x) <= step and (not self.fixed_batch or len(x) == step):
            return self._call(x)
        return np.concatenate([self._call(x[i : i + step]) for i in range(0, len(x), step)])

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 3) BGR crops -> (N, 3) angles in degrees."""
        return self.infer(self.input_format.prepare(crops))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} {self.input_format.describe()}>"
