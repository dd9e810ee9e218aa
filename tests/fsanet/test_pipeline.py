"""`fsanet pipeline` end to end on the default model (the authors' 300W-LP fusion shipped in the
package), small sizes: every target this machine can build, one bench, the budget's verdict and
exit code; one line per stage on the console, the libraries' output in logs/."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fsanet.cli import main
from fsanet.pipeline import DEFAULT_MODEL, PipelineConfig, _checkpoint, pipeline_targets

STAGES = ("model", "calibration", "export", "bench")
# what LiteRT-Torch, NNCF and the AI Edge Quantizer print while the targets are built
LIBRARY_LINES = ("LiteRT-Torch Convert", "Applying Transformations", "Statistics collection", "Running Calibration")


@pytest.mark.integration  # slow (~100 s here): builds every target, TFLite included, and benches them
def test_pipeline_builds_every_target_and_a_missed_budget_exits_1(tmp_path, capfd):
    assert DEFAULT_MODEL.is_file(), "the packaged model is missing: make packaged-model"
    strict = tmp_path / "strict.toml"
    strict.write_text("[all]\nmax_drift = 0.0001\nmax_mae_increase = 0.2\n")
    out = tmp_path / "run"
    args = ["pipeline", "--calib-count", "48", "--data", "synthetic:64:7", "--runs", "5", "-o", str(out)]
    assert main(args + ["--budget", str(strict)]) == 1
    printed, errors = capfd.readouterr()  # file-descriptor level: what C++ libraries write too
    lines = printed.splitlines()
    assert [line.split()[0] for line in lines[: len(STAGES)]] == list(STAGES), lines
    assert lines[1].split()[1] == "48" and lines[3].split()[1] == "7"  # 48 faces; 7 files benched
    for text in LIBRARY_LINES:
        assert text not in printed and text not in errors, text
    logs = (out / "logs" / "export.log").read_text()
    assert all(text in logs for text in LIBRARY_LINES), logs[:2000]
    assert printed.count("\n") < 40 and "stage times: model" in printed
    assert "model: the FSA-Net authors' 300W-LP fusion" in printed and "Apache-2.0" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "FAIL"
    # quantized files move more than 1e-4 degree: named with the metric, limit and value
    assert any("int8" in v and "drift.mean" in v and "limit 0.0001" in v for v in summary["violations"])
    assert "verdict (" in printed and "FAIL" in printed
    built = {r["target"]: r for r in summary["exports"]}
    targets, tensorrt = pipeline_targets()
    assert set(targets) | set(tensorrt) == set(built)
    files = {r["file"].rsplit("/", 1)[-1] for r in summary["exports"] if r["file"]}
    assert summary["failed_artifacts"] and set(summary["failed_artifacts"]) <= files
    for target in targets:
        path = built[target]["file"]
        assert path and (out / "artifacts").is_dir() and json.loads(open(f"{path}.json").read())["sha256"]
    if importlib.util.find_spec("tensorrt") is None:
        assert all("skipped" in built[t]["diff"] for t in built if t.startswith("tensorrt"))
    for f in ("summary.md", "report/report.md", "report/report.json", "report/latency.png", "calib.npz"):
        assert (out / f).is_file(), f
    table = (out / "summary.md").read_text()
    assert table.count("| tflite") == 4 and table.count("| onnx") == 3 and "| FAIL |" in table


def test_weights_synthetic_picks_the_training_example(tmp_path):
    checkpoint, name = _checkpoint(PipelineConfig(weights=("synthetic",)), tmp_path)
    assert checkpoint.name == "fsanet-fusion-synthetic.pt" and "synthetic heads" in name
    checkpoint, name = _checkpoint(PipelineConfig(), tmp_path)
    assert checkpoint == DEFAULT_MODEL and "authors' 300W-LP fusion" in name
