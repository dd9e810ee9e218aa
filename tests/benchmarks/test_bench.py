"""`fsanet bench` end to end on real artifacts, with a budget that holds and one that does not."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fsanet.benchmarks.bench import BenchConfig, _latency, _open, state_schedule

from fsanet.cli import main, missing_extra
from fsanet.data import open_faces


@pytest.fixture(scope="module")
def bench_run(fusion_onnx, reference_models, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    budget = out / "ok.toml"
    budget.write_text('[all]\nmax_p99_ms = 1000\n["fusion.onnx"]\nmax_mae = 4.5\n')
    argv = [
        "bench",
        str(fusion_onnx),
        reference_models["foxtracker"],
        reference_models["omasaht-1x1"],
        "--data",
        str(shared_data / "aflw2000-sample"),
        "--faces",
        str(shared_data / "real-faces" / "afw"),
        "--reference",
        str(fusion_onnx),
        "--batch",
        "1,8",
        "--runs",
        "40",
        "--warmup",
        "5",
        "--budget",
        str(budget),
        "--peak-gflops",
        "measure",
        "-o",
        str(out / "report"),
    ]
    code = main(argv)
    return code, out / "report", argv


def test_reports_hold_every_measure(bench_run):
    code, report, _ = bench_run
    assert code == 0
    result = json.loads((report / "report.json").read_text())
    assert list(result["artifacts"]) == [
        "fusion.onnx",
        "foxtracker_fsanet_capsule_official_weights.onnx",
        "fsanet-1x1-iter-688590.onnx",
    ]
    fusion = result["artifacts"]["fusion.onnx"]
    assert 80e6 < fusion["flops_per_face"] < 95e6  # about 86 MFLOP for the three members
    peak = result["peak"]
    assert peak["source"].startswith("measured in this run: ONNX Runtime MatMul 256x256x256 fp32, 1 thread")
    assert peak["gflops_per_s"] > fusion["gflops_per_s"] > 0  # a GEMM beats a small-batch CNN
    assert fusion["fraction_of_peak"] == pytest.approx(fusion["gflops_per_s"] / peak["gflops_per_s"])
    for r in result["artifacts"].values():
        lat = r["latency"]["compute"]
        assert lat["1"]["p50_ms"] <= lat["1"]["p90_ms"] <= lat["1"]["p99_ms"]
        assert lat["8"]["faces_per_s"] > 0 and r["latency"]["end_to_end"]["1"]["p50_ms"] > 0
        assert r["memory"]["model_mb"] > 0 and r["size_mb"] > 0.5
        assert 0 < r["mae"]["mean"] < 8
    assert fusion["drift"]["max"] == 0.0  # the reference against itself
    assert result["artifacts"]["fsanet-1x1-iter-688590.onnx"]["drift"]["mean"] > 0.5  # another model
    assert abs(fusion["mae"]["mean"] - 3.98) < 0.01
    text = (report / "report.md").read_text()
    assert "| fusion.onnx | fp32 |" in text and "p50 ratio, batch 8 (row / column)" in text
    assert f"Peak FP32: {peak['gflops_per_s']:.1f} GFLOP/s (measured in this run" in text
    spread = fusion["p50_ratio_rounds"]["fsanet-1x1-iter-688590.onnx"]["1"]
    assert spread["rounds"] == result["config"]["hot_rounds"] == 2 and spread["p10"] <= spread["p90"]
    assert f"({spread['p10']:.2f}-{spread['p90']:.2f})" in text
    ci = fusion["p50_ratio_ci"]["fsanet-1x1-iter-688590.onnx"]["1"]
    assert ci["low"] <= ci["high"] and f"[{ci['low']:.2f}-{ci['high']:.2f}]" in text
    # the in-loop state: 4 rounds of 10 calls, each after a sweep of this machine's L2 + L3
    loop = fusion["loop_ratios"]["p50_ratio_rounds"]["fsanet-1x1-iter-688590.onnx"]["1"]
    assert loop["rounds"] == result["config"]["rounds"] == 4 and result["config"]["sweep_bytes"] > 1 << 20
    assert fusion["latency"]["loop"]["1"]["runs"] == 40 and fusion["latency"]["compute"]["1"]["runs"] == 40
    assert "p50 ratio, batch 1, in the loop (row / column)" in text and result["machine"]["cpu"] in text
    ratio = fusion["p50_ratio_to"]["foxtracker_fsanet_capsule_official_weights.onnx"]["1"]
    fox = result["artifacts"]["foxtracker_fsanet_capsule_official_weights.onnx"]["latency"]["compute"]["1"]["p50_ms"]
    assert ratio == pytest.approx(fusion["latency"]["compute"]["1"]["p50_ms"] / fox)
    for png in ("latency.png", "errors.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"


def test_a_missed_budget_exits_1_and_names_metric_limit_and_value(bench_run, tmp_path, capsys):
    _, _, argv = bench_run
    tight = tmp_path / "tight.toml"
    tight.write_text(
        '["fsanet-1x1-iter-688590.onnx"]\nmax_drift = 0.01\n'
        '["fusion.onnx"]\nmax_p50_ratio = { "fsanet-1x1-iter-688590.onnx" = 1.0 }\n'
    )
    argv = [a if a != argv[argv.index("--budget") + 1] else str(tight) for a in argv]
    argv = [*argv[: argv.index("-o")], "--no-memory", "--runs", "10", "-o", str(tmp_path / "r")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "verdict: FAIL" in out and "fsanet-1x1-iter-688590.onnx: drift.mean = " in out and "limit 0.01" in out
    assert "fusion.onnx: p50 ratio to fsanet-1x1-iter-688590.onnx (batch 1) = " in out  # 3 members vs 1 model


def test_processes_split_the_runs_and_the_interval_is_taken_between_them(reference_models, shared_data, tmp_path):
    """--processes 3: each fresh process times its share of the runs; each ratio has one value
    per process and its interval is Student's t over them (it holds their geometric mean)."""
    fox, port = reference_models["foxtracker"], reference_models["omasaht-1x1"]
    faces = str(shared_data / "real-faces" / "afw")
    argv = ["bench", fox, port, "--faces", faces, "--batch", "1", "--runs", "30", "--warmup", "2", "--no-memory"]
    assert main([*argv, "--processes", "3", "-o", str(tmp_path / "r")]) == 0
    result = json.loads((tmp_path / "r" / "report.json").read_text())
    cfg, fox_r = result["config"], result["artifacts"]["foxtracker_fsanet_capsule_official_weights.onnx"]
    assert cfg["processes"] == 3 and cfg["rounds"] == 3 and cfg["hot_rounds"] == 6  # 3 x (1 of 10, 2 of 5)
    assert fox_r["latency"]["compute"]["1"]["runs"] == fox_r["latency"]["loop"]["1"]["runs"] == 30
    for state in (fox_r, fox_r["loop_ratios"]):
        per_process = np.array(state["p50_ratio_processes"]["fsanet-1x1-iter-688590.onnx"]["1"])
        ci = state["p50_ratio_ci"]["fsanet-1x1-iter-688590.onnx"]["1"]
        assert len(per_process) == 3 and np.all(per_process > 1)  # the capsule model is the slower one
        assert ci["method"] == "t over processes" and ci["low"] < np.exp(np.log(per_process).mean()) < ci["high"]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "split over 3 fresh processes run one after another" in text and "Student's t over the ratios" in text
    assert main([*argv, "--processes", "2", "-o", str(tmp_path / "r2")]) == 2  # t(1): 12.7 standard errors
    assert not (tmp_path / "r2").exists()


def test_peak_gflops_takes_a_number_or_measure(capsys):
    assert main(["bench", "x.onnx", "--peak-gflops", "fast", "-o", "r"]) == 2
    assert "a positive finite number of GFLOP/s or 'measure', not 'fast'" in capsys.readouterr().err


def test_a_missing_bench_library_names_the_extra(fusion_onnx, shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed: import fails
    argv = ["bench", str(fusion_onnx), "--faces", str(shared_data / "real-faces" / "afw"), "-o", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "tqdm is not installed; install it with: pip install 'fsanet-edge[bench]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_missing_libraries_map_to_the_extra_of_the_command():
    assert missing_extra("profile", "matplotlib.pyplot") == "bench"
    assert missing_extra("train", "matplotlib") == "train"
    assert missing_extra("export", "onnxslim") == "export"
    assert missing_extra("predict", "ai_edge_litert.interpreter") == "tflite"
    assert missing_extra("bench", "numpy") is None  # a core dependency: a real bug, not an extra


def test_latency_measures_each_batch_size_in_its_own_interleaved_phase(reference_models, shared_data):
    """All batch-1 rounds (artifacts taking turns; hot and in-loop rounds spread through the
    phase) come before any batch-8 call, and no call repeats the previous call's input."""
    cfg = BenchConfig(batches=(1, 8), runs=6, round_runs=2, hot_round_runs=3, rewarm=1, warmup=1, sweep_bytes=1 << 20)
    rts = {name: _open(model, cfg) for name, model in reference_models.items()}
    calls = []
    for name, rt in rts.items():
        infer = rt.infer
        rt.infer = lambda x, name=name, infer=infer: calls.append((name, len(x), x.tobytes())) or infer(x)

    class Count:
        steps = 0

        def update(self, n):
            self.steps += n

    progress = Count()
    crops = open_faces(shared_data / "real-faces" / "afw").images()
    times, _ = _latency(rts, crops, cfg, progress)
    for rt in rts.values():
        rt.close()
    batches = [b for _, b, _ in calls]
    assert batches == sorted(batches) and set(batches) == {1, 8}
    timed_b1 = [name for name, b, _ in calls if b == 1][2:]  # after one warm-up call each
    assert (cfg.hot_length, cfg.hot_rounds) == (3, 2)
    hot = ["foxtracker"] * 4 + ["omasaht-1x1"] * 4  # a hot round: 1 untimed + 3 timed calls each
    loop = ["foxtracker"] * 3 + ["omasaht-1x1"] * 3  # an in-loop round: 1 untimed + 2 timed each
    assert cfg.rounds == 3 and state_schedule(cfg.hot_rounds, cfg.rounds) == ["loop", "hot", "loop", "hot", "loop"]
    assert timed_b1 == loop + hot + loop + hot + loop
    for name in rts:  # every call takes the next input: never the same bytes twice in a row
        inputs = [x for n, _, x in calls if n == name]
        assert all(a != b for a, b in zip(inputs, inputs[1:], strict=False))
    assert progress.steps == (cfg.rounds + cfg.hot_rounds) * len(cfg.batches) * len(rts)
    for per_b in times["hot"].values():
        assert [len(t) for t in per_b[8]] == [cfg.hot_length] * cfg.hot_rounds
    for per_b in times["loop"].values():
        assert [len(t) for t in per_b[8]] == [cfg.round_runs] * cfg.rounds
        assert np.all(np.concatenate(per_b[1]) > 0)
