"""PyTorch backend for checkpoints (`.pt`), on the CPU or a CUDA device. Imports torch inside."""

from __future__ import annotations

import numpy as np
from fsanet.runtimes.base import Runtime, TensorSpec

from fsanet.errors import BackendUnavailable, DataError
from fsanet.scoped import torch_threads


class TorchRuntime(Runtime):
    backend = "torch"

    def __init__(self, path, input_format=None, manifest=None, threads: int | None = None, device: str = "cpu"):
        self.threads, self.device = threads, device
        if manifest is None:
            manifest = checkpoint_manifest(path)
        super().__init__(path, input_format, manifest)

    def _load(self) -> None:
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable("torch", "torch") from e
        from fsanet import checkpoint

        self._torch = torch
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise DataError(
                f"{self.path.name}: device '{self.device}': PyTorch {torch.__version__} sees no CUDA GPU; "
                "use device 'cpu', or a CUDA build of PyTorch on a machine with an NVIDIA GPU"
            )
        self.model = checkpoint.load(self.path).to(self.device)

    @property
    def inputs(self) -> list[TensorSpec]:
        s = self.input_format.size
        return [TensorSpec("input", ("batch", 3, s, s), "float32")]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("angles", ("batch", 3), "float32")]

    def executes_on(self) -> str:
        return f"torch {self.device}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        # the thread count for this call only: the process's own setting is left as it was
        with torch.inference_mode(), torch_threads(self.threads):
            return self.model(torch.from_numpy(x).to(self.device)).cpu().numpy()


def checkpoint_manifest(path) -> dict:
    from fsanet.manifest import base_manifest

    return base_manifest(precision="fp32", backend_format="pytorch-checkpoint")
