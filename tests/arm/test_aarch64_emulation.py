"""Arm (aarch64) under emulation: the authors' fusion as FP32 and INT8 ONNX and TFLite, exported
here and put in a device kit (`fsanet bundle`), checked by `fsanet check` in the aarch64
runtime-only install (a Debian arm64 userland under qemu-user) on four CPU models
(`fsanet arm`), judged against the float ONNX on x86.

Needs mmdebstrap (`.ci/run` installs it) and the package registries (Debian, PyPI) the first
time; the userland, qemu and wheels are then cached in build/arm. The emulated share of CI:
the same FACES real faces (evenly spread over the 1,207) on each of the 4 CPU models, 4 artifacts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsanet.cli import main

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "arm"
FACES = 50  # per CPU model (make arm: 200, about 9 CPU-minutes per model here)
DOTPROD, I8MM, SVE = "asimddp", "i8mm", "sve"


@pytest.fixture(scope="module")
def arm_report(fusion_onnx, fusion_onnx_int8, fusion_tflite, fusion_tflite_int8, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("arm-report")
    models = [fusion_onnx, fusion_onnx_int8, fusion_tflite, fusion_tflite_int8]
    argv = ["arm", *map(str, models), "--reference", str(fusion_onnx), "--faces", str(shared_data / "real-faces"),
            "-n", str(FACES), "--cache", str(CACHE), "-o", str(out)]  # fmt: skip
    code = main(argv)
    return code, json.loads((out / "arm.json").read_text()), (out / "arm.md").read_text()


@pytest.mark.integration
def test_int8_holds_the_budget_and_fp32_matches_x86_on_every_cpu_model(arm_report):
    code, report, _ = arm_report
    assert code == 0 and report["verdict"] == "PASS", report["violations"]
    assert set(report["arm"]) == {"cortex-a53", "cortex-a72", "neoverse-n1", "max"}
    for cpu, section in report["arm"].items():
        arts = section["artifacts"]
        assert len(arts) == 4
        for name, r in arts.items():
            assert r["faces"] == FACES and r["non_finite"]["faces"] == 0
            if r["precision"] == "int8":
                assert r["drift"]["mean"] <= 0.25, (cpu, name)
                assert np.isfinite(r["gap_to_x86_drift"]) and r["vs_x86_same_file"]["mean"] < 0.25
            else:  # the same angles as on x86
                assert r["vs_x86_same_file"]["max"] <= 1e-3, (cpu, name)


@pytest.mark.integration
def test_each_cpu_model_reports_its_isa_and_what_ran_the_files(arm_report):
    _, report, markdown = arm_report
    isa = {cpu: set(s["machine"]["features"]) for cpu, s in report["arm"].items()}
    assert DOTPROD not in isa["cortex-a53"] and DOTPROD not in isa["cortex-a72"]
    assert DOTPROD in isa["neoverse-n1"] and I8MM not in isa["neoverse-n1"]
    assert {DOTPROD, I8MM, SVE} <= isa["max"]
    assert all(s["machine"]["arch"] == "aarch64" for s in report["arm"].values())
    assert f"{FACES} of 1207 faces" in report["faces"]
    for section in report["arm"].values():
        assert section["check_verdict"] == "PASS"
        for r in section["artifacts"].values():
            if r["backend"] == "onnxruntime":
                assert "CPUExecutionProvider" in r["kernels"] and "CPUExecutionProvider" in r["executes_on"]
            else:
                assert "XNNPACK" in r["executes_on"]
    for cpu in report["arm"]:
        assert f"| {cpu} |" in markdown
    assert "No latency" in markdown and " ms" not in markdown


@pytest.mark.integration
def test_the_emulated_machine_has_no_torch_and_the_x86_wheels_versions(arm_report):
    _, report, _ = arm_report
    wheels = dict(w.split("==") for w in report["emulator"]["wheels"])
    from importlib.metadata import version

    for name in ("numpy", "onnxruntime", "ai-edge-litert"):
        assert wheels[name] == version(name)
    assert not {"torch", "tensorflow", "jax"} & set(wheels)
    assert re.match(r"qemu-user (\d+:)?10\.", report["emulator"]["qemu"])  # trixie's, not bookworm's 7.2
    for section in report["arm"].values():
        libs = section["machine"]["libraries"]
        assert libs["onnxruntime"] == version("onnxruntime") and "torch" not in libs


GUARD = """
import platform, sys
from fsanet.benchmarks.emulated_check import attempts, refuse_processes
refuse_processes()
from fsanet.runtimes import fpenv
assert fpenv.available() and fpenv.capture() is not None
from fsanet import machine
assert machine.fingerprint(1)["system"] == machine.system()
import ctypes.util
try:
    ctypes.util.find_library("c")
except RuntimeError as e:
    print("refused:", e)
print("attempts", len(attempts))
"""


def test_the_guest_refuses_child_processes_and_the_runtimes_need_none():
    """Under qemu-user without binfmt_misc no child process can run: the guest's audit hook
    refuses any (find_library would start ldconfig), and neither fsanet's runtimes nor the
    machine fingerprint start one (platform.platform() would run `uname -p`)."""
    out = subprocess.run([sys.executable, "-c", GUARD], capture_output=True, text=True, check=True).stdout
    assert "refused: subprocess.Popen" in out and "attempts 1" in out
    import platform

    from fsanet.machine import system

    assert system() == platform.platform()


def test_bad_cpu_model_and_missing_reference_fail_before_any_download(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    cache = tmp_path / "cache"
    assert main(["arm", str(model), "--reference", str(tmp_path / "none.onnx"), "--faces", "synthetic:4:0",
                 "--cache", str(cache), "-o", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "none.onnx" in capsys.readouterr().err
    assert main(["arm", str(model), "--reference", str(model), "--faces", "synthetic:4:0", "--cpu", "cortex-a99",
                 "--cache", str(cache), "-o", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "cortex-a99" in capsys.readouterr().err
    assert not cache.exists()
