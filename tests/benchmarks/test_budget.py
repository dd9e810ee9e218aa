import pytest
from fsanet.benchmarks.budget import check, load_budget

from fsanet.errors import DataError

RESULTS = {
    "a.onnx": {
        "mae": {"mean": 4.0},
        "drift": {"mean": 0.1, "max": 1.0},
        "latency": {"compute": {"1": {"p99_ms": 2.0}}},
        "p50_ratio_to": {"a.onnx": {"1": 1.0}, "b.onnx": {"1": 1.3}},
    },
    "b.onnx": {
        "mae": {"mean": 4.5},
        "drift": {"mean": 0.3, "max": 3.0},
        "latency": {"compute": {"1": {"p99_ms": 1.0}}},
        "p50_ratio_to": {"a.onnx": {"1": 1 / 1.3}, "b.onnx": {"1": 1.0}},
    },
}


def test_limits_for_all_and_per_artifact(tmp_path):
    f = tmp_path / "budget.toml"
    f.write_text('[all]\nmax_drift = 0.25\nmax_p99_ms = 5\n["a.onnx"]\nmax_mae = 3.5\n')
    violations = check(load_budget(f), RESULTS)
    assert [(v.artifact, v.metric, v.limit, v.measured) for v in violations] == [
        ("a.onnx", "mae.mean", 3.5, 4.0),
        ("b.onnx", "drift.mean", 0.25, 0.3),
    ]
    assert str(violations[1]) == "b.onnx: drift.mean = 0.3, limit 0.25"  # a finite value: no "not finite" note


def test_a_limit_on_something_not_measured_is_a_violation(tmp_path):
    f = tmp_path / "budget.toml"
    f.write_text("[all]\nmax_mae_increase = 0.2\n")
    assert {v.measured for v in check(load_budget(f), RESULTS)} == {None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[all]\nmax_dirft = 1\n", "unknown key 'max_dirft'"),
        ("[all]\nmax_mae = 'four'\n", "must be a number"),
        ("max_mae = 1\n", "must be a table"),
        ("[all\n", "not valid TOML"),
        ('["a.onnx"]\nmax_p50_ratio = 1.25\n', "must be a table like"),
        ('["a.onnx"]\nmax_p50_ratio = { "b.onnx" = "fast" }\n', "max_p50_ratio.b.onnx must be a number"),
    ],
)
def test_bad_budget_files(tmp_path, text, message):
    f = tmp_path / "budget.toml"
    f.write_text(text)
    with pytest.raises(DataError, match=message):
        load_budget(f)


def test_section_for_an_artifact_not_in_the_run(tmp_path):
    f = tmp_path / "budget.toml"
    f.write_text('["c.onnx"]\nmax_mae = 1\n')
    with pytest.raises(DataError, match="c.onnx"):
        check(load_budget(f), RESULTS)


def test_p50_ratio_limits_against_named_artifacts(tmp_path):
    f = tmp_path / "budget.toml"
    f.write_text('["a.onnx"]\nmax_p50_ratio = { "b.onnx" = 1.25 }\n["b.onnx"]\nmax_p50_ratio = { "a.onnx" = 1.0 }\n')
    violations = check(load_budget(f), RESULTS)
    assert [(v.artifact, v.metric, v.limit) for v in violations] == [("a.onnx", "p50 ratio to b.onnx (batch 1)", 1.25)]
    assert violations[0].measured == pytest.approx(1.3)
    f.write_text('["a.onnx"]\nmax_p50_ratio = { "b.onnx" = 1.35 }\n')
    assert check(load_budget(f), RESULTS) == []


def test_p50_ratio_against_an_artifact_not_in_the_run(tmp_path):
    f = tmp_path / "budget.toml"
    f.write_text('[all]\nmax_p50_ratio = { "c.onnx" = 2 }\n')
    with pytest.raises(DataError, match="max_p50_ratio names \\['c.onnx'\\], not in this run"):
        check(load_budget(f), RESULTS)
