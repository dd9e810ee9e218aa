"""What a runtime-only board relies on: the downstream stages import without torch or TF."""

import subprocess
import sys

import pytest

LIGHT = [
    "fsanet.accuracy",
    "fsanet.benchmarks.bench",
    "fsanet.benchmarks.budget",
    "fsanet.benchmarks.flops",
    "fsanet.benchmarks.latency",
    "fsanet.benchmarks.memory",
    "fsanet.benchmarks.report",
    "fsanet.runtimes",
    "fsanet.runtimes.estimator",
    "fsanet.runtimes.onnxruntime",
    "fsanet.runtimes.tflite",
    "fsanet.calib",
    "fsanet.manifest",
    "fsanet.preprocess",
    "fsanet.pose",
    "fsanet.data",
    "fsanet.cli",
]


@pytest.mark.parametrize("module", LIGHT)
def test_imports_without_torch_or_tensorflow(module):
    code = f"import sys, {module}; heavy = {{'torch', 'tensorflow'}} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "fsanet", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("import-keras", "export", "eval", "predict", "bench", "variants"):
        assert command in out


def test_the_wheel_builds_without_setuptools_warnings_and_carries_the_models(tmp_path):
    """pip wheel (verbose, so that the build backend's warnings show) of a clean copy of the
    tree: no setuptools warning, and the packaged models with their manifest, licence and NOTICE."""
    import zipfile

    from fsanet.kit.wheel import _copy_sources, source_tree

    copy = tmp_path / "src"
    _copy_sources(source_tree(), copy)
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-v", "--no-deps",
           "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(copy)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    printed = proc.stdout + proc.stderr
    warnings = [line for line in printed.splitlines() if "Warning" in line or "deprecated" in line.lower()]
    assert not warnings, warnings
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    for f in ("fsanet-fusion-300wlp.pt", "fsanet-fusion-300wlp.pt.json", "fsanet-fusion-synthetic.pt", "NOTICE",
              "LICENSE-FSA-Net"):  # fmt: skip
        assert f"fsanet/models/{f}" in names, f
    assert "fsanet/budgets/default.toml" in names
