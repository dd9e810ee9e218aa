"""Drift on Arm: the device kit (`fsanet bundle`) made here on x86, checked by `fsanet check` in
the aarch64 runtime-only install under qemu-user for several CPU models (`fsanet arm`).

The INT8 kernels of ONNX Runtime (MLAS) and XNNPACK take other code paths on Arm (NEON,
dot-product, i8mm, SVE) than on x86, so an INT8 file that holds the budget here is judged again
on each emulated CPU model: the budget's accuracy limits per CPU model, exit 1 when any is
missed. FP32 files must give x86's angles to 1e-3 degree. Emulation checks numbers, never
speed: qemu translates every instruction, so the check runs without latency.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from fsanet.benchmarks.budget import check, load_budget

from fsanet.accuracy import drift, mae
from fsanet.arm import CPUS, Emulator, prepare
from fsanet.errors import DataError

FP32_TOLERANCE = 1e-3  # degrees: a float file must give the same angles on Arm as on x86
FLOAT_PRECISIONS = ("fp32", "float32")
# the budget limits emulation can judge: accuracy (MAE ones with a labelled golden set); speed never
DRIFT_KEYS = ("max_drift", "max_drift_max")
MAE_KEYS = ("max_mae", "max_mae_increase")
GUEST = "fsanet.benchmarks.emulated_check"
OWN_LINE = "fsanet check: "  # the check's own progress lines, not something a runtime said


@dataclass
class ArmConfig:
    artifacts: list[str]
    reference: str  # the float ONNX; its x86 angles are the kit's golden angles
    faces: str  # the golden set: real faces (a folder, .npz) or synthetic:N:SEED
    count: int = 200  # faces in the golden set, evenly spread over `faces`
    cpus: tuple[str, ...] = tuple(CPUS)
    budget: str = "default"
    output: str = "out/arm"
    cache: str = "build/arm"
    jobs: int = 2  # emulated runs at a time (each one thread)
    timeout: float = 3600.0  # seconds per emulated run


def run_arm(cfg: ArmConfig) -> dict:
    """The kit here, then its check on each CPU model under emulation; the report (also written
    to `cfg.output`: arm.json, arm.md) with its violations. Inputs are checked first."""
    from fsanet.kit.bundle import make_bundle
    from fsanet.kit.layout import Bundle

    names = _check_inputs(cfg)
    budget = load_budget(cfg.budget)
    out = Path(cfg.output)
    kit = out / "kit"
    shutil.rmtree(kit, ignore_errors=True)
    make_bundle(cfg.artifacts, kit, faces=cfg.faces, count=cfg.count, budget=cfg.budget, reference=cfg.reference)
    bundle = Bundle(kit)
    emulator = prepare(cfg.cache)
    started = time.monotonic()
    guest = _emulate(cfg, emulator, kit, out / "emulated")
    golden = bundle.golden()
    report = {
        "config": {"cpus": list(cfg.cpus), "budget": cfg.budget, "reference": bundle.reference, "kit": str(kit)},
        "faces": bundle.manifest["golden"].get("description"),
        "emulator": emulator.versions,
        "x86": _x86_section(bundle, golden, names),
        "arm": {cpu: _cpu_section(cpu, guest[cpu], names) for cpu in cfg.cpus},
        "emulation_wall_s": round(time.monotonic() - started, 1),
    }
    for section in report["arm"].values():
        _add_gap(section, report["x86"])
    judged, report["not_judged"] = _judged(budget, golden.labels is not None)
    report["violations"] = _violations(report, judged, cfg.budget)
    report["verdict"] = "FAIL" if report["violations"] else "PASS"
    _write(report, out)
    return report


# -- inputs ------------------------------------------------------------------------------------
def _check_inputs(cfg: ArmConfig) -> list[str]:
    """The artifacts' file names, the reference first; every model file and CPU model checked."""
    ref = Path(cfg.reference)
    paths = [ref] + [Path(a) for a in cfg.artifacts if Path(a).resolve() != ref.resolve()]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such model file")
        if p.suffix.lower() not in (".onnx", ".tflite"):
            raise DataError(f"{p}: the emulated Arm machine runs .onnx and .tflite files only")
    if ref.suffix.lower() != ".onnx":
        raise DataError(f"--reference {ref}: give the float ONNX (its x86 angles are the yardstick)")
    for cpu in cfg.cpus:
        if cpu not in CPUS:
            raise DataError(f"--cpu {cpu}: not one of the emulated CPU models {', '.join(CPUS)}")
    if not cfg.cpus:
        raise DataError("--cpu: name at least one CPU model")
    cfg.artifacts = [str(p) for p in paths]
    return [p.name for p in paths]


# -- the emulated runs -------------------------------------------------------------------------
def _emulate(cfg: ArmConfig, emulator: Emulator, kit: Path, work: Path) -> dict:
    from tqdm import tqdm

    shutil.rmtree(work, ignore_errors=True)
    folders = {cpu: work / cpu for cpu in cfg.cpus}
    for folder in folders.values():
        folder.mkdir(parents=True)
    out = {}
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        running = {
            pool.submit(
                emulator.run, cpu, ["-m", GUEST, str(kit.resolve()), str(f.resolve())], f / "log.txt", cfg.timeout
            ): cpu
            for cpu, f in folders.items()
        }
        for done in tqdm(as_completed(running), total=len(running), desc="emulated Arm", unit="cpu", disable=None):
            done.result()
            cpu = running[done]
            out[cpu] = _guest_result(folders[cpu])
    return out


def _guest_result(folder: Path) -> dict:
    said = []
    for line in (folder / "log.txt").read_text(errors="replace").splitlines():
        text = line.strip()
        if text and not text.startswith(OWN_LINE) and text not in said:
            said.append(text)
    return {
        "check": json.loads((folder / "check" / "check.json").read_text()),
        "runtime": json.loads((folder / "runtime.json").read_text()),
        "said": said,
    }


# -- comparison --------------------------------------------------------------------------------
def _x86_section(bundle, golden, names: list[str]) -> dict:
    """Each file's angles here (recorded in the kit) against the float ONNX's (the golden angles)."""
    host = bundle.host_angles()
    precision = {a.name: a.precision for a in bundle.artifacts()}
    results = {}
    for name in names:
        r = {"precision": precision[name], "faces": len(golden.crops), "drift": drift(host[name], golden.reference)}
        if golden.labels is not None:
            r["mae"] = mae(host[name], golden.labels)
        results[name] = r
    return {"machine": bundle.manifest.get("built_on"), "artifacts": results}


def _cpu_section(cpu: str, guest: dict, names: list[str]) -> dict:
    """check.json's results per file, by the report's names: drift against the golden angles
    (the float ONNX on x86), and against the same file's own angles on x86."""
    checked, runtime = guest["check"], guest["runtime"]
    results = {}
    for name in names:
        if name not in checked["artifacts"]:
            why = checked.get("errors", {}).get(name) or checked.get("skipped", {}).get(name, {}).get("reason")
            raise DataError(f"{cpu}: fsanet check did not run {name}: {why}")
        r = checked["artifacts"][name]
        results[name] = {
            "precision": r["precision"],
            "faces": r["non_finite"]["of"],
            "drift": r["drift"],
            "vs_x86_same_file": r["drift_to_host"],
            "non_finite": r["non_finite"],
            **{k: r[k] for k in ("mae", "mae_increase") if k in r},
            **runtime["artifacts"][name],
        }
    return {
        "about": CPUS[cpu],
        "machine": runtime["machine"],
        "check_verdict": checked.get("verdict"),
        "said": guest["said"],
        "artifacts": results,
    }


def _add_gap(section: dict, x86: dict) -> None:
    for name, r in section["artifacts"].items():
        r["gap_to_x86_drift"] = r["drift"]["mean"] - x86["artifacts"][name]["drift"]["mean"]


def _judged(budget: dict, labelled: bool) -> tuple[dict, list[str]]:
    """The budget's limits that emulation can judge, and a note for each one it cannot."""
    keys = DRIFT_KEYS + (MAE_KEYS if labelled else ())
    judged, skipped = {}, set()
    for section, limits in budget.items():
        judged[section] = {k: v for k, v in limits.items() if k in keys}
        skipped |= set(limits) - set(keys)
    why = {k: "needs a labelled golden set" for k in MAE_KEYS}
    return judged, [f"{k}: {why.get(k, 'speed and size are not measured under emulation')}" for k in sorted(skipped)]


def _violations(report: dict, budget: dict, source: str) -> list[str]:
    """The budget per CPU model (every artifact by its file name), and FP32's match with x86."""
    out = []
    for cpu, section in report["arm"].items():
        arts = section["artifacts"]
        out += [f"{cpu}: {v}" for v in check(budget, arts, source)]
        for name, r in arts.items():
            worst = r["vs_x86_same_file"]["max"]
            if r["precision"] in FLOAT_PRECISIONS and not worst <= FP32_TOLERANCE:
                out.append(f"{cpu}: {name}: max |Arm - x86| = {worst:.3g} degree, limit {FP32_TOLERANCE:g} for FP32")
    return out


# -- report ------------------------------------------------------------------------------------
def _write(report: dict, out: Path) -> None:
    from fsanet.benchmarks.arm_report import markdown

    from fsanet.files import json_text, write_text

    write_text(out / "arm.json", json_text(report))
    write_text(out / "arm.md", markdown(report))
