"""Instruction counts (valgrind): deterministic where wall time is not."""

from __future__ import annotations

import os
import shutil

import pytest
from fsanet.benchmarks.budget import check
from fsanet.benchmarks.instructions import INSTALL, count_instructions


@pytest.fixture(scope="module")
def valgrind_present():
    if shutil.which("valgrind") is None:
        message = f"valgrind is missing: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs it: a CI without it proves nothing here
        pytest.skip(message)


def test_the_count_for_one_model_repeats_within_2_percent(valgrind_present, fusion_onnx, real_faces):
    counts = [count_instructions(str(fusion_onnx), real_faces[:11], runs=10)["per_face"] for _ in range(2)]
    assert 5e6 < counts[0] < 1e8  # the fused fusion: about 18 M per face on the AVX2 kernels
    assert abs(counts[0] - counts[1]) / counts[0] < 0.005  # the issue asks for 2%; measured: 0.1%


def test_the_instructions_ratio_budget_key():
    results = {"a": {"instructions_ratio_to": {"b": 1.30}}, "b": {"instructions_ratio_to": {"a": 1 / 1.3}}}
    [v] = check({"a": {"max_instructions_ratio": {"b": 1.25}}}, results)
    assert v.metric == "instructions ratio to b" and v.measured == 1.30
    assert check({"a": {"max_instructions_ratio": {"b": 1.35}}}, results) == []
    [v] = check({"a": {"max_instructions_ratio": {"b": 1.35}}}, {"a": {}, "b": {}})  # not counted: a violation
    assert v.measured is None
