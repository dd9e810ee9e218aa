"""`fsanet check DIR`: prove a device with a kit from `fsanet bundle`.

Verifies the kit first (kit/layout.py: bundle.json against its schema, every file against
SHA256SUMS and bundle.json, no unlisted file), then runs each artifact whose runtime is installed on
the golden crops: drift and MAE against the golden angles and labels, the gap to the angles the
same file gave on the machine that made the kit, latency hot and in the loop (batch 1, the
artifacts taking turns round by round as in `fsanet bench`), the device's fingerprint, a verdict
per artifact by the kit's budget, and the artifact to ship on this device.
Imports numpy and the runtimes only; starts no subprocess (see kit/__init__.py).
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fsanet.kit import layout

from fsanet import __version__
from fsanet.accuracy import drift, mae
from fsanet.errors import BackendUnavailable, DataError, FsanetError
from fsanet.files import sha256

DEFAULT_OUTPUT = "check"  # inside the kit folder


@dataclass(frozen=True)
class CheckConfig:
    runs: int = 200  # timed calls per artifact in each latency state
    warmup: int = 20
    threads: int = 1
    latency: bool = True  # False under emulation: its timings say nothing of a device
    build: tuple[str, ...] = ()  # TensorRT targets to build from the kit's ONNX first

    def __post_init__(self):
        if min(self.runs, self.threads) < 1 or self.warmup < 0:
            raise DataError(f"check: runs and threads must be >= 1, warmup >= 0: {self}")

    def bench(self):
        """The round arithmetic of `fsanet bench` (one definition), at batch 1."""
        from fsanet.benchmarks.bench import BenchConfig

        return BenchConfig(batches=(1,), threads=self.threads, runs=self.runs, warmup=self.warmup)


class _Steps:
    """A tqdm bar where tqdm is installed; plain lines on stderr on a runtime-only device."""

    def __init__(self, total: int):
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="check", unit="step", disable=None)
        except ImportError:
            self.bar = None

    def __call__(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            print(f"fsanet check: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _available(art: layout.Artifact) -> BackendUnavailable | None:
    from fsanet import runtimes

    try:
        runtimes.preload(art.path)
    except BackendUnavailable as e:
        return e
    return None


def runtime_install(bundle: layout.Bundle, extra: str) -> str:
    """The pip command for the runtime of `extra`, by the kit's wheel's own requirements (not
    `pip install fsanet-edge[extra]`: that name on a package index is not this project)."""
    from fsanet.kit.wheel import runtime_requirements

    reqs = runtime_requirements(bundle.folder / bundle.manifest["wheel"]["file"])[1].get(extra, [extra])
    return "pip install " + " ".join(f"'{r}'" for r in reqs)


def _spec(art: layout.Artifact) -> str:
    return f"{art.path}@{art.input_format}" if art.input_format else str(art.path)


def _accuracy(angles: np.ndarray, golden: layout.Golden, host: np.ndarray | None, reference_mae) -> dict:
    from fsanet.runtimes.estimator import non_finite_faces

    out = {
        "drift": drift(angles, golden.reference),
        "drift_to_host": drift(angles, host) if host is not None else None,
        "non_finite": {"faces": non_finite_faces(angles), "of": len(angles)},
    }
    if golden.labels is not None:
        out["mae"] = mae(angles, golden.labels)
        if reference_mae:
            out["mae_increase"] = out["mae"]["mean"] - reference_mae["mean"]
    return out


def _latency(rts: dict, crops: np.ndarray, cfg: CheckConfig) -> dict[str, dict[str, list[np.ndarray]]]:
    """Per artifact, its batch-1 round samples in each state: hot (consecutive calls) and in the
    loop (each call after an untimed write over L2 + L3); artifacts take turns round by round,
    as in `fsanet bench` (one loop: benchmarks/bench.py interleaved_latency)."""
    from fsanet.benchmarks.bench import batch_calls, interleaved_latency

    rounds, _ = interleaved_latency(batch_calls(rts, crops, 1), cfg.bench())
    return {name: {state: rounds[state][name] for state in rounds} for name in rts}


def _latency_results(results: dict, rounds: dict) -> None:
    """latency.compute/loop at batch 1, hot samples, and p50 ratios with their 95% interval, in
    the keys `fsanet bench` uses (so the budget reads them alike)."""
    from fsanet.benchmarks.intervals import ratio_interval, resampled_p50
    from fsanet.benchmarks.latency import summarise

    for name, per in rounds.items():
        hot, loop = np.concatenate(per["hot"]), np.concatenate(per["loop"])
        results[name]["latency"] = {"compute": {"1": summarise(hot, 1)}, "loop": {"1": summarise(loop, 1)}}
        results[name]["latency_samples_ms"] = hot.tolist()
    boot = resampled_p50({n: per["hot"] for n, per in rounds.items()})
    p50 = {n: results[n]["latency"]["compute"]["1"]["p50_ms"] for n in rounds}
    for name in rounds:
        results[name]["p50_ratio_to"] = {o: {"1": p50[name] / p50[o]} for o in rounds}
        results[name]["p50_ratio_ci"] = {o: {"1": ratio_interval(boot[name], boot[o])} for o in rounds}


def _run(arts, golden, host, reference_mae, reference: str, cfg: CheckConfig, steps) -> tuple[dict, dict]:
    """Results of every artifact that opens and runs, and the error of each that does not."""
    from fsanet.runtimes.estimator import PoseEstimator

    from fsanet import runtimes

    results, errors, rts = {}, {}, {}
    try:
        for art in arts:
            try:
                rt = rts[art.name] = runtimes.open(_spec(art), threads=cfg.threads)
                angles = PoseEstimator(rt, check_finite=False).predict(golden.crops)
            except FsanetError as e:  # a file this device's runtime cannot load or run
                errors[art.name] = str(e)
                rts.pop(art.name, None)
                continue
            results[art.name] = {
                "path": str(art.path),
                "backend": rt.backend,
                "precision": rt.precision,
                "input_format": rt.input_format.describe(),
                "size_mb": art.path.stat().st_size / 1e6,
                "golden_source": art.name == reference,
                "is_reference": False,  # judged against the golden angles like every other file
                **_accuracy(angles, golden, host.get(art.name), reference_mae),
            }
            steps(f"{art.name}: angles of {len(angles)} golden faces")
        if cfg.latency and rts:
            _latency_results(results, _latency(rts, golden.crops, cfg))
            steps(f"latency of {len(rts)} artifacts")
    finally:
        for rt in rts.values():
            rt.close()
    return results, errors


def run_check(folder: str | Path, output: str | Path | None = None, cfg: CheckConfig = CheckConfig()) -> dict:
    """Check the kit `folder` on this machine; write check.json and check.md into `output`
    (default `folder/check`) and return the result (its keys: kit/report.py)."""
    from fsanet.kit import judge, report

    from fsanet import machine
    from fsanet.paths import check_output_dir

    folder = Path(folder)
    output = Path(output) if output is not None else folder / DEFAULT_OUTPUT
    check_output_dir(output, [folder])
    bundle = layout.Bundle(folder)  # every file's sha256 first
    golden = bundle.golden()
    arts = bundle.artifacts()
    built = []
    if cfg.build:
        from fsanet.kit.engines import build_engines

        built = build_engines(bundle, cfg.build, output / "engines", golden.crops)
        arts += built
    skipped = {}
    for art in arts:
        missing = _available(art)
        if missing is not None:
            install = runtime_install(bundle, missing.extra)
            skipped[art.name] = {
                "backend": art.backend,
                "extra": missing.extra,
                "reason": str(missing),
                "install": install,
            }
    runnable = [a for a in arts if a.name not in skipped]
    if not runnable:
        extras = sorted({s["install"] for s in skipped.values()})
        raise DataError(f"{folder}: no artifact of the kit can run here; install a runtime: {' or '.join(extras)}")
    heat = machine.thermal()
    steps = _Steps(len(runnable) + cfg.latency)
    try:
        results, errors = _run(
            runnable, golden, bundle.host_angles(), bundle.manifest["golden"].get("reference_mae"),
            bundle.reference, cfg, steps,
        )  # fmt: skip
    finally:
        steps.close()
    after = machine.thermal()
    fp = machine.fingerprint(cfg.threads)
    if heat:
        fp |= {"thermal_before": heat, "thermal_after": after, "warnings": machine.throttle_warnings(heat, after)}
    verdict = judge.judge(
        bundle, results, skipped, errors, measured_latency=cfg.latency, labelled=golden.labels is not None
    )
    bc = cfg.bench()
    result = {
        "format": "fsanet-check",
        "version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fsanet": __version__,
        "bundle": {
            "name": bundle.manifest.get("name", bundle.name),
            "folder": str(folder),
            "manifest_sha256": sha256(folder / layout.MANIFEST),
            "files_verified": len(bundle.sums) + 1,  # SHA256SUMS's files and itself
            "created": bundle.manifest.get("created"),
            "built_on": bundle.manifest.get("built_on", {}).get("cpu"),
            "reference": bundle.reference,
            "golden": {k: bundle.manifest["golden"].get(k) for k in ("count", "description", "labelled")},
        },
        "machine": fp,
        "config": asdict(cfg)
        | {"batches": [1], "build": list(cfg.build)}
        | (
            {
                "hot_rounds": bc.hot_rounds,
                "hot_length": bc.hot_length,
                "rounds": bc.rounds,
                "round_runs": bc.round_runs,
                "rewarm": bc.rewarm,
                "sweep_bytes": _sweep(bc),
            }
            if cfg.latency
            else {}
        ),
        "artifacts": results,
        "built": [a.name for a in built],
        "skipped": skipped,
        "errors": errors,
        **verdict,
    }
    result["files"] = report.write(result, output)
    return result


def _sweep(bc) -> int:
    from fsanet.benchmarks.bench import sweep_size

    return sweep_size(bc)


def exit_code(result: dict) -> int:
    """2 when an artifact could not run, 1 when a limit is missed, else 0."""
    return 2 if result["errors"] else 1 if result["violations"] else 0
