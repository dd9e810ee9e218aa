"""Library calls leave the caller's process as they found it: logger levels, the matplotlib
backend, torch's thread count, TF32, the SIGTERM handler and sys.modules markers."""

from __future__ import annotations

import logging
import signal
import sys

import pytest


def snapshot() -> dict:
    import matplotlib
    import torch

    loggers = {
        name: (lg.level, tuple(h.level for h in lg.handlers))
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    return {
        "loggers": loggers,
        "backend": dict.__getitem__(matplotlib.rcParams, "backend"),
        "torch_threads": torch.get_num_threads(),
        "tf32": (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32),
        "sigterm": signal.getsignal(signal.SIGTERM),
        "tensorboard_marker": "tensorboard.compat.notf" in sys.modules,
    }


def changed(before: dict, after: dict) -> dict:
    """What differs. A logger's level counts (one created during the call only when it was set
    to a level), and its handlers' levels where a library did not add or remove handlers."""
    out = {k: (before[k], after[k]) for k in before if k != "loggers" and before[k] != after[k]}
    for name, state in after["loggers"].items():
        old = before["loggers"].get(name, (logging.NOTSET, state[1]))
        if state[0] != old[0] or (len(state[1]) == len(old[1]) and state[1] != old[1]):
            out[f"logger {name}"] = (old, state)
    return out


@pytest.fixture
def guarded_state():
    """A process state unlike the libraries' choices, put back after the test."""
    import matplotlib
    import torch

    saved = (dict.__getitem__(matplotlib.rcParams, "backend"), torch.get_num_threads())
    matplotlib.use("svg")
    torch.set_num_threads(2)
    for name in ("nncf", "torch.onnx", "litert_torch"):
        logging.getLogger(name).setLevel(logging.INFO)
    yield
    matplotlib.use(saved[0])
    torch.set_num_threads(saved[1])


@pytest.mark.integration  # slow (~25 s here): exports, benches, profiles and trains
def test_export_bench_report_profile_and_training_leave_the_process_alone(guarded_state, noise_faces, tmp_path):
    import torch
    from fsanet.benchmarks.bench import BenchConfig, run_bench
    from fsanet.benchmarks.profile import profile_onnx
    from fsanet.benchmarks.profile import write_reports as write_profile
    from fsanet.benchmarks.report import write_reports
    from fsanet.export.targets import export_targets
    from fsanet.train import TrainConfig, train

    from fsanet import calib, checkpoint
    from fsanet.data import open_faces
    from fsanet.model import build

    torch.manual_seed(0)
    ckpt = checkpoint.save(build("fsanet-1x1-capsule").eval(), tmp_path / "one.pt")
    cal = calib.build("synthetic:40:3", 16, seed=0).save(tmp_path / "calib.npz")
    faces = open_faces(noise_faces)

    before = snapshot()
    export_targets(ckpt, ["onnx", "onnx-int8"], tmp_path / "out", cal)
    onnx = str(tmp_path / "out" / "one.onnx")
    cfg = BenchConfig(batches=(1,), threads=1, runs=4, warmup=1, memory=False)
    result = run_bench([onnx, str(ckpt)], None, faces, onnx, cfg)
    write_reports(result, [], tmp_path / "report")
    write_profile(profile_onnx(onnx, faces.images(), runs=2, warmup=1), tmp_path / "profile")
    train(TrainConfig(data="synthetic:16:1", output=str(tmp_path / "run"), epochs=1, limit=16, workers=0,
                      val=("synthetic:8:9",), device="cpu", progress=False))  # fmt: skip
    after = snapshot()

    assert changed(before, after) == {}
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "report" / "latency.png").is_file()


def test_the_check_sees_a_change(guarded_state):
    """The snapshot is not blind: a library that set these would be caught."""
    import torch

    before = snapshot()
    torch.set_num_threads(1)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    assert set(changed(before, snapshot())) == {"torch_threads", "logger nncf"}
