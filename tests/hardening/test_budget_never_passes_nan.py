"""The budget gate never passes a broken model: NaN angles and NaN limits (issue: hardening)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fsanet.benchmarks.budget import Violation, check, load_budget

from fsanet.cli import main
from fsanet.errors import DataError

FAST = ["--runs", "2", "--warmup", "0", "--no-memory", "--batch", "1"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_nan_model_fails_the_default_budget(tiny_models, noise_faces, tmp_path, capsys):
    code, out, err = run(
        capsys, "bench", tiny_models["nan"], "--reference", tiny_models["mean"], "--faces", noise_faces,
        "--budget", "default", *FAST, "-o", tmp_path / "rep",
    )  # fmt: skip
    assert code == 1, out + err
    assert "verdict: FAIL" in out
    assert "nan.onnx: drift.mean is nan: the model produced non-finite angles on 4 of 4 faces" in out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())  # strict JSON: NaN written as null
    assert report["artifacts"]["nan.onnx"]["drift"]["mean"] is None
    assert report["artifacts"]["nan.onnx"]["non_finite"] == {"faces": 4, "of": 4}


def test_nan_model_fails_a_budget_that_limits_latency_only(tiny_models, noise_faces, tmp_path, capsys):
    budget = tmp_path / "latency.toml"
    budget.write_text("[all]\nmax_p99_ms = 1000\n")
    code, out, _ = run(capsys, "bench", tiny_models["nan"], "--faces", noise_faces, "--budget", budget, *FAST,
                       "-o", tmp_path / "rep")  # fmt: skip
    assert code == 1
    assert "nan.onnx: the model produced non-finite angles on 4 of 4 faces" in out


def test_good_model_still_passes(tiny_models, noise_faces, tmp_path, capsys):
    code, out, err = run(capsys, "bench", tiny_models["mean"], "--reference", tiny_models["mean"], "--faces",
                         noise_faces, "--budget", "default", *FAST, "-o", tmp_path / "rep")  # fmt: skip
    assert code == 0, out + err
    assert "verdict: PASS" in out


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "true", "'0.2'"])
def test_a_limit_that_is_not_a_finite_number_is_a_budget_error(tmp_path, value):
    f = tmp_path / "budget.toml"
    f.write_text(f"[all]\nmax_drift = {value}\n")
    with pytest.raises(DataError, match="max_drift must be"):
        load_budget(f)


@pytest.mark.parametrize("value", ["nan", "0", "-1"])
def test_a_ratio_limit_must_be_positive(tmp_path, value):
    f = tmp_path / "budget.toml"
    f.write_text(f'["a.onnx"]\nmax_p50_ratio = {{ "b.onnx" = {value} }}\n')
    with pytest.raises(DataError, match="max_p50_ratio.b.onnx must be"):
        load_budget(f)


def test_nan_limit_in_a_budget_file_exits_2(tiny_models, noise_faces, tmp_path, capsys):
    f = tmp_path / "budget.toml"
    f.write_text("[all]\nmax_drift = nan\n")
    code, _, err = run(capsys, "bench", tiny_models["mean"], "--faces", noise_faces, "--budget", f, *FAST,
                       "-o", tmp_path / "rep")  # fmt: skip
    assert code == 2 and "budget.toml" in err and "finite" in err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("metric", ["drift", "mae"])
def test_a_nan_measurement_is_a_violation(metric):
    limit_key = {"drift": "max_drift", "mae": "max_mae"}[metric]
    results = {"m.onnx": {metric: {"mean": float("nan"), "max": float("nan")}, "non_finite": {"faces": 3, "of": 8}}}
    violations = check({"all": {limit_key: 1.0}}, results)
    assert {v.metric for v in violations} == {f"{metric}.mean", "angles"}
    text = [str(v) for v in violations if v.metric != "angles"][0]
    assert text == f"m.onnx: {metric}.mean is nan: the model produced non-finite angles on 3 of 8 faces"


def test_an_infinite_ratio_is_a_violation():
    results = {"a": {"p50_ratio_to": {"b": {"1": float("inf")}}}, "b": {"p50_ratio_to": {"a": {"1": 0.0}}}}
    assert [v.metric for v in check({"a": {"max_p50_ratio": {"b": 2.0}}}, results)] == ["p50 ratio to b (batch 1)"]


def test_violation_text_for_a_finite_value_is_unchanged():
    assert str(Violation("a.onnx", "drift.mean", 0.25, 0.3)) == "a.onnx: drift.mean = 0.3, limit 0.25"


def test_eval_of_a_nan_model_exits_non_zero(tiny_models, make_npz, tmp_path, capsys):
    data = make_npz(tmp_path / "set.npz")
    code, _, err = run(capsys, "eval", tiny_models["nan"], "--data", data, "--json", tmp_path / "e.json")
    assert code == 2
    assert "non-finite angles on 6 of 6 faces" in err
    assert not (tmp_path / "e.json").exists()


def test_eval_of_a_good_model_writes_strict_json(tiny_models, make_npz, tmp_path, capsys):
    data = make_npz(tmp_path / "set.npz")
    code, _, _ = run(capsys, "eval", tiny_models["mean"], "--data", data, "--json", tmp_path / "e.json")
    assert code == 0
    assert np.isfinite(json.loads((tmp_path / "e.json").read_text())["mae"]["mean"])


def test_without_a_budget_there_is_no_pass_and_a_nan_model_is_named(tiny_models, noise_faces, tmp_path, capsys):
    code, out, _ = run(capsys, "bench", tiny_models["nan"], "--faces", noise_faces, *FAST, "-o", tmp_path / "rep")
    assert code == 0  # nothing to judge against: exit 1 is for a violated budget only
    assert "verdict: none (no --budget given)" in out and "PASS" not in out
    assert "warning: nan.onnx produced non-finite angles on 4 of 4 faces" in out
