"""Drift on Arm: every artifact run by the aarch64 wheels under qemu-user for several CPU models,
against the float ONNX run here on x86 (`fsanet arm`).

The INT8 kernels of ONNX Runtime (MLAS) and XNNPACK take other code paths on Arm (NEON,
dot-product, i8mm, SVE) than on x86, so an INT8 file that holds the budget here is judged again
on each emulated CPU model: the budget's limits per CPU model, exit 1 when any is missed. FP32
files must give x86's angles to 1e-3 degree. Emulation checks numbers, never speed: qemu
translates every instruction, so no time measured under it is reported.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fsanet.benchmarks.accuracy import drift, mae
from fsanet.benchmarks.budget import check, load_budget

from fsanet.arm import CPUS, Emulator, prepare
from fsanet.errors import DataError

FP32_TOLERANCE = 1e-3  # degrees: a float file must give the same angles on Arm as on x86
# the budget limits emulation can judge: accuracy (MAE ones only with labelled --data); speed never
DRIFT_KEYS = ("max_drift", "max_drift_max")
MAE_KEYS = ("max_mae", "max_mae_increase")
FLOAT_PRECISIONS = ("fp32", "float32")
GUEST = "fsanet.benchmarks.emulated_angles"
OWN_LINE = "[fsanet] "


@dataclass
class ArmConfig:
    artifacts: list[str]
    reference: str  # the float ONNX; its x86 angles are what every run is judged against
    faces: str  # unlabelled real faces (a folder, .npz or synthetic:N:SEED)
    count: int = 200  # faces drawn from `faces`, evenly spread
    per_cpu: int | None = None  # faces each CPU model runs (None: all `count`); CPU model i takes slice i
    data: str | None = None  # labelled faces: MAE and the budget's MAE limits (all of them on every model)
    cpus: tuple[str, ...] = tuple(CPUS)
    budget: str = "default"
    output: str = "out/arm"
    cache: str = "build/arm"
    jobs: int = 2  # emulated runs at a time (each one thread)
    timeout: float = 3600.0  # seconds per emulated run
    log: list[str] = field(default_factory=list)


@dataclass
class Faces:
    crops: np.ndarray  # unlabelled, then labelled
    unlabelled: int
    labels: np.ndarray | None
    source: str


def run_arm(cfg: ArmConfig) -> dict:
    """x86 angles, then each CPU model's under emulation; the report (also written to
    `cfg.output`: arm.json, arm.md) with its violations. Inputs are checked before anything
    is prepared or downloaded."""
    artifacts = _artifact_paths(cfg)
    budget = load_budget(cfg.budget)
    faces = _faces(cfg)
    x86, precision = _x86_angles(artifacts, faces.crops)
    emulator = prepare(cfg.cache)
    work = Path(cfg.output) / "emulated"
    started = time.monotonic()
    guest = _emulate(cfg, emulator, artifacts, faces, work)
    wall = time.monotonic() - started
    ref = artifacts[0].name
    report = {
        "config": {"cpus": list(cfg.cpus), "budget": cfg.budget, "faces": faces.source, "reference": ref},
        "emulator": emulator.versions,
        "x86": _x86_section(artifacts, x86, precision, faces, ref),
        "arm": {cpu: _cpu_section(cpu, artifacts, x86, guest[cpu], faces, ref, cfg) for cpu in cfg.cpus},
        "emulation_wall_s": round(wall, 1),
    }
    judged, report["not_judged"] = _judged(budget, faces.labels is not None)
    violations = _violations(report, judged, cfg.budget)
    report["violations"] = violations
    report["verdict"] = "FAIL" if violations else "PASS"
    _write(report, Path(cfg.output))
    return report


# -- inputs ------------------------------------------------------------------------------------
def _artifact_paths(cfg: ArmConfig) -> list[Path]:
    """The reference first, then the other artifacts (each once, by file name)."""
    ref = Path(cfg.reference)
    paths = [ref] + [Path(a) for a in cfg.artifacts if Path(a).resolve() != ref.resolve()]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such model file")
        if p.suffix.lower() not in (".onnx", ".tflite"):
            raise DataError(f"{p}: the emulated Arm machine runs .onnx and .tflite files only")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise DataError(f"artifacts share a file name ({', '.join(names)}); the report names them by file name")
    if paths[0].suffix.lower() != ".onnx":
        raise DataError(f"--reference {paths[0]}: give the float ONNX (its x86 angles are the yardstick)")
    for cpu in cfg.cpus:
        if cpu not in CPUS:
            raise DataError(f"--cpu {cpu}: not one of the emulated CPU models {', '.join(CPUS)}")
    return paths


def _faces(cfg: ArmConfig) -> Faces:
    from fsanet.data import open_faces

    found = open_faces(cfg.faces)
    if len(found) == 0:
        raise DataError(f"--faces {cfg.faces}: no faces found")
    count = min(cfg.count, len(found))
    index = np.unique(np.linspace(0, len(found) - 1, count).round().astype(int))
    crops = np.stack([found.load(int(i)) for i in index])
    source = f"{len(index)} of {len(found)} faces from {found.source}, evenly spread"
    labels = None
    if cfg.data:
        labelled = open_faces(cfg.data)
        if labelled.poses is None:
            raise DataError(f"--data {cfg.data}: has no pose labels; give a labelled set (AFLW2000, .npz)")
        crops = np.concatenate([crops, labelled.images()])
        labels = np.asarray(labelled.poses, dtype=np.float64)
        source += f"; MAE on {len(labelled)} labelled faces from {labelled.source}"
    return Faces(crops, len(index), labels, source)


def _x86_angles(artifacts: list[Path], crops: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each artifact's angles on every crop here, and its precision (from its manifest)."""
    from fsanet import runtimes

    angles, precision = {}, {}
    for path in artifacts:
        with runtimes.open(path, threads=1) as rt:
            angles[path.name], precision[path.name] = rt.predict(crops), rt.precision
    return angles, precision


def _rows(cfg: ArmConfig, faces: Faces, i: int) -> np.ndarray:
    """The crops CPU model `i` runs: its slice of the unlabelled faces (slice i of the set when
    `per_cpu` is smaller, so that the models together cover it), then every labelled face."""
    n = faces.unlabelled
    take = n if cfg.per_cpu is None else min(cfg.per_cpu, n)
    unlabelled = (np.arange(take) + i * take) % n
    return np.concatenate([unlabelled, np.arange(n, len(faces.crops))])


# -- the emulated runs -------------------------------------------------------------------------
def _emulate(cfg: ArmConfig, emulator: Emulator, artifacts: list[Path], faces: Faces, work: Path) -> dict:
    from tqdm import tqdm

    shutil.rmtree(work, ignore_errors=True)
    jobs = {}
    for i, cpu in enumerate(cfg.cpus):
        folder = work / cpu
        folder.mkdir(parents=True)
        rows = _rows(cfg, faces, i)
        np.save(folder / "crops.npy", faces.crops[rows])
        args = ["-m", GUEST, str((folder / "crops.npy").resolve()), str(folder.resolve())]
        jobs[cpu] = (rows, folder, args + [str(p.resolve()) for p in artifacts])
    out = {}
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        running = {
            pool.submit(emulator.run, cpu, args, folder / "log.txt", cfg.timeout): cpu
            for cpu, (_, folder, args) in jobs.items()
        }
        for done in tqdm(as_completed(running), total=len(running), desc="emulated Arm", unit="cpu", disable=None):
            cpu = running[done]
            done.result()
            rows, folder, _ = jobs[cpu]
            out[cpu] = _guest_result(rows, folder)
    return out


def _guest_result(rows: np.ndarray, folder: Path) -> dict:
    with np.load(folder / "angles.npz") as z:
        angles = {k: z[k] for k in z.files}
    said = []
    for line in (folder / "log.txt").read_text(errors="replace").splitlines():
        if line.strip() and not line.startswith(OWN_LINE) and line.strip() not in said:
            said.append(line.strip())
    return {"rows": rows, "angles": angles, "runtime": json.loads((folder / "runtime.json").read_text()), "said": said}


# -- comparison --------------------------------------------------------------------------------
def _results(angles: np.ndarray, rows: np.ndarray, x86: dict, name: str, faces: Faces, ref: str) -> dict:
    """Drift against the x86 float ONNX (unlabelled faces), against the same file on x86 (all
    faces it ran), MAE and its increase over the x86 float ONNX (labelled faces)."""
    from fsanet.runtimes.estimator import non_finite_faces

    unl = rows < faces.unlabelled
    out = {
        "faces": int(unl.sum()),
        "drift": drift(angles[unl], x86[ref][rows[unl]]),
        "vs_x86_same_file": drift(angles, x86[name][rows]),
        "non_finite": {"faces": non_finite_faces(angles), "of": len(angles)},
    }
    if faces.labels is not None:
        lab = rows[~unl] - faces.unlabelled
        out["mae"] = mae(angles[~unl], faces.labels[lab])
        out["mae_increase"] = out["mae"]["mean"] - mae(x86[ref][rows[~unl]], faces.labels[lab])["mean"]
    return out


def _x86_section(artifacts: list[Path], x86: dict, precision: dict, faces: Faces, ref: str) -> dict:
    from fsanet.benchmarks.machine import fingerprint

    rows = np.arange(len(faces.crops))
    results = {}
    for p in artifacts:
        results[p.name] = {"precision": precision[p.name], **_results(x86[p.name], rows, x86, p.name, faces, ref)}
    return {"machine": fingerprint(threads=1), "artifacts": results}


def _cpu_section(cpu, artifacts, x86, guest, faces, ref, cfg) -> dict:
    results = {}
    for p in artifacts:
        info = guest["runtime"]["artifacts"][p.name]
        results[p.name] = {**info, **_results(guest["angles"][p.name], guest["rows"], x86, p.name, faces, ref)}
        x86_mean = _x86_drift_mean(x86, p.name, ref, guest["rows"], faces)
        results[p.name]["gap_to_x86_drift"] = results[p.name]["drift"]["mean"] - x86_mean
    return {
        "about": CPUS[cpu],
        "machine": guest["runtime"]["machine"],
        "said": guest["said"],
        "artifacts": results,
    }


def _x86_drift_mean(x86: dict, name: str, ref: str, rows: np.ndarray, faces: Faces) -> float:
    unl = rows[rows < faces.unlabelled]
    return drift(x86[name][unl], x86[ref][unl])["mean"]


def _judged(budget: dict, labelled: bool) -> tuple[dict, list[str]]:
    """The budget's limits that emulation can judge, and a note for each one it cannot."""
    keys = DRIFT_KEYS + (MAE_KEYS if labelled else ())
    judged, skipped = {}, set()
    for section, limits in budget.items():
        judged[section] = {k: v for k, v in limits.items() if k in keys}
        skipped |= set(limits) - set(keys)
    why = {k: "needs labelled faces (--data)" for k in MAE_KEYS}
    return judged, [f"{k}: {why.get(k, 'speed and size are not measured under emulation')}" for k in sorted(skipped)]


def _violations(report: dict, budget: dict, source: str) -> list[str]:
    """The budget per CPU model (every artifact by its file name), and FP32's match with x86."""
    out = []
    for cpu, section in report["arm"].items():
        arts = {name: {k: v for k, v in r.items() if k != "kernels"} for name, r in section["artifacts"].items()}
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
