"""Two CPU processes (torchrun, gloo) train like one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from fsanet.train import TrainConfig, train
from fsanet.train.state import load_state

ARGS = ["--epochs", "2", "--batch", "4", "--limit", "12", "--workers", "0", "--milestones", "1"]


def test_two_gloo_processes_match_one_process(shared_data, tmp_path):
    aflw = str(shared_data / "aflw2000-sample")
    one = train(
        TrainConfig(data=aflw, val=(aflw,), output=str(tmp_path / "one"), epochs=2, batch=4, limit=12, workers=0,
                    milestones=(1,))
    )  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fsanet"]
    cmd += ["train", "--data", aflw, "--val", aflw, *ARGS, "-o", str(tmp_path / "two")]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cpu x2, batch 4 (2 per process)" in done.stdout

    two = load_state(tmp_path / "two" / "state.pt")["history"]
    curve1 = np.concatenate([h["step_losses"] for h in one["history"]])
    curve2 = np.concatenate([h["step_losses"] for h in two])
    assert len(curve1) == len(curve2) == 6
    np.testing.assert_allclose(curve2, curve1, rtol=1e-4)
    mae1 = [h["aflw2000-sample_mean"] for h in one["history"]]
    np.testing.assert_allclose([h["aflw2000-sample_mean"] for h in two], mae1, rtol=1e-4)
    # the same function: weights agree too, except the conv biases right before a batch norm,
    # whose true gradient is zero, so Adam turns their float-noise gradients into +-lr steps
    from fsanet import checkpoint
    from fsanet.data import open_faces
    from fsanet.evaluate import predict_torch

    crops = open_faces(aflw).images()
    p1 = predict_torch(checkpoint.load(tmp_path / "one" / "last.pt"), crops)
    p2 = predict_torch(checkpoint.load(tmp_path / "two" / "last.pt"), crops)
    assert np.abs(p1 - p2).max() < 0.05


def test_plain_cuda_device_names_this_process_gpu_or_is_a_clear_error():
    import pytest
    import torch
    from fsanet.train import distributed

    from fsanet.errors import DataError

    if torch.cuda.is_available():
        ctx = distributed.setup("cuda")  # torch.cuda.set_device and DDP's device_ids need an index
        assert ctx.device == torch.device("cuda", 0)
    else:
        with pytest.raises(DataError, match="device cuda: CUDA is not available"):
            distributed.setup("cuda")
