"""`fsanet bench`: several artifacts side by side, in one run, on the same inputs.

Latency is measured in two states, both reported:
- hot: rounds of `hot_round_runs` consecutive calls of one artifact (its weights and
  activations stay in the caches: a head-pose model alone in a loop, steady state);
- in the loop: rounds of `round_runs` calls, each preceded by an untimed write over as many
  bytes as this machine's L2 + L3 (what a face detector and the rest of a frame's work do to
  the caches before the model runs each frame).
The artifacts take turns round by round (A, B, C, then A again, ...) so that a noisy machine
slows all of them alike and the ratios between them stay meaningful; a shared VM's slow spells
last seconds, longer than a round. Every call takes the next of several input batches (never
the same input twice in a row). Each batch size is its own phase (all batch-1 rounds first).
With `processes` > 1 the runs are split over that many fresh processes, one after another, and
each ratio's interval is taken over them (benchmarks/latency_processes.py says why).
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from fsanet.benchmarks.flops import flops_per_face
from fsanet.benchmarks.footprint import weight_bytes
from fsanet.benchmarks.latency import CacheSweep, cycled, input_batches, summarise, time_calls
from fsanet.runtimes import model_file
from fsanet.runtimes.estimator import PoseEstimator, non_finite_faces

from fsanet.accuracy import drift, mae
from fsanet.errors import DataError


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...] = (1, 32)
    threads: int = 1
    runs: int = 300
    warmup: int = 30
    round_runs: int = 10  # in-loop state: timed calls per artifact and batch in one interleaved round
    hot_round_runs: int = 50  # hot state: consecutive timed calls of one artifact per round
    rewarm: int = 2  # untimed calls after switching artifacts (caches hold the other model)
    sweep_bytes: int | None = None  # in-loop state: bytes written before each call; None: L2 + L3
    provider: str = "cpu"
    device: str = "cpu"
    end_to_end: bool = True
    memory: bool = True
    peak_gflops: float | str | None = None  # a number, or "measure" (benchmarks/peak.py)
    denormals_as_zero: bool = True
    instructions: bool = False  # count instructions per face with valgrind (benchmarks/instructions.py)
    processes: int = 1  # fresh processes the timed runs are split over (interval between processes)
    p50_within: float | None = None  # stop once every p50's 95% interval is within +-this share; runs: the cap

    @property
    def rounds(self) -> int:
        """In-loop rounds."""
        return max(self.runs // self.round_runs, 1)

    @property
    def hot_length(self) -> int:
        """Calls per hot round: `hot_round_runs`, shorter when `runs` is small (two rounds at least)."""
        return min(self.hot_round_runs, max(self.runs // 2, 1))

    @property
    def hot_rounds(self) -> int:
        return max(self.runs // self.hot_length, 2)

    def __post_init__(self):
        counts = (self.threads, self.runs, self.round_runs, self.hot_round_runs, self.processes, *self.batches)
        if not self.batches or min(counts) < 1 or min(self.warmup, self.rewarm) < 0:
            raise DataError(f"bench: batches, threads, runs and round lengths must be >= 1, warm-ups >= 0: {self}")
        if self.processes == 2:
            raise DataError("bench: --processes 2 gives an interval 12.7 standard errors wide; use 1 or at least 3")
        if self.processes > 1 and self.runs // self.processes < 2:
            raise DataError(f"bench: --runs {self.runs} over --processes {self.processes}: give at least 2 runs each")
        if self.p50_within is not None and not 0 < self.p50_within < 1:
            raise DataError(f"bench: --p50-within takes a share between 0 and 1 (0.03 for 3%), got {self.p50_within}")
        if self.p50_within is not None and self.processes > 1:
            raise DataError("bench: --p50-within stops each run on its own; with --processes give a fixed --runs")

    @property
    def per_process(self) -> BenchConfig:
        """What each process runs: this config, or its share of the runs with --processes."""
        from fsanet.benchmarks.latency_processes import share

        return share(self) if self.processes > 1 else self


def artifact_names(models: list[str], reference: str | None = None) -> list[str]:
    """The names the artifacts of a run get in its results and in a budget's sections: the
    file names (`#2`, `#3` for repeats), the reference first when it is not among `models`."""
    return _names([reference, *models] if reference and reference not in models else list(models))


def _names(models: list[str]) -> list[str]:
    names = []
    for m in models:
        base = model_file(m).name
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


def _open(model: str, cfg: BenchConfig):
    from fsanet import runtimes

    return runtimes.open(
        model, threads=cfg.threads, provider=cfg.provider, device=cfg.device, denormals_as_zero=cfg.denormals_as_zero
    )


def _peak_kernel(cfg: BenchConfig):
    """The peak GEMM to time alongside the artifacts, or None when the peak is given or not wanted."""
    if cfg.peak_gflops is None or isinstance(cfg.peak_gflops, int | float):
        return None
    if cfg.peak_gflops != "measure":
        raise DataError(f"bench: --peak-gflops takes a number or 'measure', got {cfg.peak_gflops!r}")
    if cfg.provider != "cpu" or cfg.device != "cpu":
        raise DataError("bench: --peak-gflops measure times the CPU; give the GPU's peak as a number instead")
    from fsanet.benchmarks.peak import GemmPeak

    return GemmPeak(cfg.threads, cfg.denormals_as_zero)


def sweep_size(cfg: BenchConfig) -> int:
    """Bytes written before each in-loop call: this machine's L2 + L3 (32 MiB where unknown)."""
    if cfg.sweep_bytes:
        return cfg.sweep_bytes
    from fsanet.machine import cache_bytes, caches

    sizes = [cache_bytes(v) for k, v in caches().items() if k in ("L2", "L3")]
    return sum(s for s in sizes if s) or 32 << 20


def _latency(rts: dict, crops: np.ndarray, cfg: BenchConfig, progress, peak=None) -> tuple[dict, list]:
    """Compute-only latency per state, artifact and batch size: {state: {name: {batch: [round
    samples]}}}. Each batch size is its own phase (`interleaved_latency`). Phases, because a
    deployment runs one batch size: a batch-1 call timed right after another model's batch-32
    call pays for its cache evictions."""
    times = {state: {name: {} for name in rts} for state in ("hot", "loop")}
    peak_times = []
    sweep = CacheSweep(sweep_size(cfg))
    if peak is not None:
        time_calls(peak.run, 0, cfg.warmup)
    for b in cfg.batches:
        rounds, peak_rounds = interleaved_latency(batch_calls(rts, crops, b), cfg, sweep, progress, peak)
        for state, by_name in rounds.items():
            for name, samples in by_name.items():
                times[state][name][b] = samples
        peak_times += peak_rounds
    return times, peak_times


def batch_calls(rts: dict, crops: np.ndarray, batch: int) -> dict:
    """Per runtime, a call that infers the next of its prepared input batches of `batch` faces
    (never the same input twice in a row)."""
    calls = {}
    for name, rt in rts.items():
        feed = cycled([rt.input_format.prepare(x) for x in input_batches(crops, batch)])
        calls[name] = lambda rt=rt, feed=feed: rt.infer(next(feed))
    return calls


def interleaved_latency(
    calls: dict, cfg: BenchConfig, sweep: CacheSweep | None = None, progress=None, peak=None
) -> tuple[dict[str, dict[str, list[np.ndarray]]], list[np.ndarray]]:
    """One latency phase of `calls` (name -> callable; `fsanet bench` and `fsanet check` alike):
    each warmed up, then `cfg.hot_rounds` hot rounds of `cfg.hot_length` consecutive calls and
    `cfg.rounds` in-loop rounds of `cfg.round_runs` calls each after `sweep()` (default: a
    write over L2 + L3), the two kinds spread evenly through the phase (`state_schedule`); in
    each round the calls take turns, `cfg.rewarm` untimed
    calls after each switch. Returns {"hot"|"loop": {name: [one array of ms per round]}} (the
    ratios' intervals resample rounds) and the samples of `peak.run` timed after each hot round."""
    sweep = sweep if sweep is not None else CacheSweep(sweep_size(cfg))
    for call in calls.values():
        time_calls(call, 0, cfg.warmup)
    rounds = {state: {name: [] for name in calls} for state in ("hot", "loop")}
    peak_rounds = []
    blocks = _blocks(cfg)
    for i, block in enumerate(blocks):
        for state in block:
            for name, call in calls.items():
                if state == "hot":
                    rounds["hot"][name].append(time_calls(call, cfg.hot_length, cfg.rewarm))
                else:
                    rounds["loop"][name].append(time_calls(call, cfg.round_runs, cfg.rewarm, before=sweep))
                _step(progress)
            if state == "hot" and peak is not None:
                peak_rounds.append(time_calls(peak.run, cfg.hot_length, cfg.rewarm))
        if cfg.p50_within and i + 1 >= MIN_BLOCKS and p50s_within(rounds, cfg.p50_within):
            _step(progress, sum(map(len, blocks[i + 1 :])) * len(calls))  # the bar ends where the phase does
            break
    return rounds, peak_rounds


MIN_BLOCKS = 4  # --p50-within: the stopping rule is checked from this block on (bootstrap needs rounds)


def _blocks(cfg: BenchConfig) -> list[list[str]]:
    """The phase's rounds as blocks checked one by one: one block of the whole schedule, or with
    `p50_within` blocks of one hot round and the in-loop rounds that go with it (the two states
    in the proportion of the full schedule), as many as fit in `runs`."""
    if not cfg.p50_within:
        return [state_schedule(cfg.hot_rounds, cfg.rounds)]
    loop_per_hot = max(round(cfg.rounds / cfg.hot_rounds), 1)
    return [state_schedule(1, loop_per_hot) for _ in range(cfg.hot_rounds)]


def p50s_within(rounds: dict, share: float, resamples: int = 500) -> bool:
    """Whether every artifact's p50, in each state, has a 95% bootstrap interval (over its rounds)
    within +-share of the p50: the stopping rule of `--p50-within`."""
    from fsanet.benchmarks.intervals import resampled_p50

    for by_name in rounds.values():
        for name, boot in resampled_p50(by_name, resamples).items():
            low, high = np.percentile(boot, [2.5, 97.5])
            p50 = np.median(np.concatenate(by_name[name]))
            if (high - low) / 2 > share * p50:
                return False
    return True


def state_schedule(hot: int, loop: int) -> list[str]:
    """The order of `hot` hot rounds and `loop` in-loop rounds, spread evenly through the phase:
    a shared machine's speed drifts over minutes, so both states (and the ratios between them)
    sample the same minutes instead of one state the first seconds and the other the rest."""
    order = sorted([((i + 0.5) / hot, "hot") for i in range(hot)] + [((i + 0.5) / loop, "loop") for i in range(loop)])
    return [state for _, state in order]


def _step(progress, n: int = 1) -> None:
    if progress is not None and n:
        progress.update(n)


def _end_to_end(rts: dict, faces, cfg: BenchConfig, progress) -> dict:
    """Photo + landmarks -> angles for one face: official crop, input format, inference."""
    from fsanet.preprocess import official_crop

    raws = [faces.raw(i) for i in range(min(len(faces), 32))]
    out = {}
    for name, rt in rts.items():
        order = itertools.cycle(raws)

        def one(rt=rt, order=order):
            image, landmarks = next(order)
            rt.predict(official_crop(image, landmarks)[None])

        out[name] = time_calls(one, max(cfg.runs // 2, 1), cfg.warmup)
        progress.update(1)
    return out


def run_bench(
    models: list[str],
    data=None,
    faces=None,
    reference: str | None = None,
    cfg: BenchConfig = BenchConfig(),
    progress=None,
) -> dict:
    """Benchmark `models` (paths, optionally `path@format`) and return the results dict.

    data: a labelled FaceSet (MAE); faces: an unlabelled FaceSet of real faces (drift against
    `reference`, which is added to the run if it is not one of `models`; latency inputs).
    progress: an object with update(n) (and set_total(n)) to report to, e.g. a console stage;
    default: a tqdm bar of its own.
    """
    from fsanet.benchmarks.memory import measure
    from tqdm import tqdm

    if not models:
        raise DataError("bench: give at least one model")
    if reference and reference not in models:
        models = [reference, *models]
    names = _names(models)
    timing_set = faces if faces is not None else data
    if timing_set is None or len(timing_set) == 0:
        raise DataError("bench: needs faces to run on (--faces DIR or --data DIR)")
    crops = timing_set.images()
    peak = _peak_kernel(cfg)  # a bad --peak-gflops fails before any model is loaded
    one = cfg.per_process
    timed_rounds = sum(map(len, _blocks(one))) * cfg.processes * len(cfg.batches)
    steps = len(models) * (timed_rounds + 3 + cfg.end_to_end + cfg.memory)
    results: dict[str, dict] = {}
    from fsanet import machine

    heat = machine.thermal()  # before the run; compared with after it (throttling)
    if progress is not None and hasattr(progress, "set_total"):
        progress.set_total(steps)
    bar = tqdm(total=steps, desc="bench", unit="step", disable=None) if progress is None else nullcontext(progress)
    with bar as progress:
        rts = {}
        for name, model in zip(names, models, strict=True):
            rt = rts[name] = _open(model, cfg)
            path = model_file(model)
            results[name] = {
                "path": str(path),
                "backend": rt.backend,
                "executes_on": rt.executes_on(),
                "precision": rt.precision,
                "input_format": rt.input_format.describe(),
                "size_mb": path.stat().st_size / 1e6,
                "flops_per_face": flops_per_face(rt),
                "weights_mb": _mb(weight_bytes(rt)),
                "is_reference": model == reference,
            }
            progress.update(1)
        if cfg.processes > 1:
            from fsanet.benchmarks.latency_processes import run_in_processes

            rounds, peak_rounds = run_in_processes(models, names, crops, cfg, progress)
        else:
            rounds, peak_rounds = _latency(rts, crops, cfg, progress, peak)
        lat = {
            state: {name: {b: np.concatenate(t) for b, t in per_b.items()} for name, per_b in by_name.items()}
            for state, by_name in rounds.items()
        }
        peak_info = _peak_info(cfg, peak, peak_rounds)
        e2e = _end_to_end(rts, timing_set, cfg, progress) if cfg.end_to_end and timing_set.raw else {}
        data_crops = data.images() if data is not None else None
        ref_name = names[models.index(reference)] if reference else None
        predictions = {}
        for name, rt in rts.items():
            r = results[name]
            r["latency"] = {  # compute: the hot state (budgets' p50/p99 keys read it); loop: in the loop
                "compute": {str(b): summarise(t, b) for b, t in lat["hot"][name].items()},
                "loop": {str(b): summarise(t, b) for b, t in lat["loop"][name].items()},
            }
            r["latency_samples_ms"] = lat["hot"][name][cfg.batches[0]].tolist()
            r["latency_loop_samples_ms"] = lat["loop"][name][cfg.batches[0]].tolist()
            if name in e2e:
                r["latency"]["end_to_end"] = {"1": summarise(e2e[name], 1)}
            if r["flops_per_face"]:
                p50 = r["latency"]["compute"][str(cfg.batches[0])]["p50_ms"] / cfg.batches[0]
                r["gflops_per_s"] = r["flops_per_face"] / (p50 / 1e3) / 1e9
                if peak_info:
                    r["fraction_of_peak"] = r["gflops_per_s"] / peak_info["gflops_per_s"]
            # every artifact's angles on the timing faces: drift, and a model that outputs NaN
            # fails any budget (budget.check), even one that limits latency only
            predictions[name] = PoseEstimator(rt, check_finite=False).predict(crops)
            seen = [predictions[name]]
            if data_crops is not None and data.poses is not None:
                if timing_set is not data:
                    seen.append(PoseEstimator(rt, check_finite=False).predict(data_crops))
                r["mae"] = mae(seen[-1], data.poses)
            r["non_finite"] = {"faces": sum(map(non_finite_faces, seen)), "of": sum(map(len, seen))}
            progress.update(1)
        for name in rts:
            if ref_name:
                results[name]["drift"] = drift(predictions[name], predictions[ref_name]) if faces is not None else None
                if "mae" in results[name] and "mae" in results[ref_name]:
                    results[name]["mae_increase"] = results[name]["mae"]["mean"] - results[ref_name]["mae"]["mean"]
            progress.update(1)
        for rt in rts.values():
            rt.close()
        if cfg.memory:
            for name, model in zip(names, models, strict=True):
                results[name]["memory"] = measure(model, cfg.batches[0], cfg.threads)
                progress.update(1)
        if cfg.instructions:
            _instructions(results, names, models, crops)
    _ratios(results, "compute", names[0], cfg.batches, rounds["hot"], cfg.processes)
    for r in results.values():  # the in-loop ratios beside the hot ones
        r["loop_ratios"] = {}
    _ratios(results, "loop", names[0], cfg.batches, rounds["loop"], cfg.processes, into="loop_ratios")
    return {
        "config": asdict(cfg)
        | {
            # rounds as run, at the first batch size (--p50-within may stop a phase early)
            "rounds": len(rounds["loop"][names[0]][cfg.batches[0]]),
            "hot_rounds": len(rounds["hot"][names[0]][cfg.batches[0]]),
            "rounds_per_batch": {
                str(b): {state: len(rounds[state][names[0]][b]) for state in ("hot", "loop")} for b in cfg.batches
            },
            "hot_length": one.hot_length,
            "sweep_bytes": sweep_size(cfg),
        },
        "machine": machine.fingerprint(cfg.threads) | _heat(heat, machine),
        "data": getattr(data, "source", None),
        "faces": getattr(faces, "source", None),
        "reference": ref_name,
        "baseline": names[0],
        "peak": peak_info,
        "artifacts": results,
    }


def _instructions(results: dict, names: list[str], models: list[str], crops: np.ndarray) -> None:
    """Instructions per face (valgrind) of each ONNX/TFLite artifact, and their ratios."""
    from fsanet.benchmarks.instructions import count_instructions, valgrind

    valgrind()  # missing: fail now, naming the install command
    for name, model in zip(names, models, strict=True):
        countable = model_file(model).suffix.lower() in (".onnx", ".tflite")
        results[name]["instructions"] = count_instructions(model, crops) if countable else None
    counts = {n: (r["instructions"] or {}).get("per_face") for n, r in results.items()}
    for name, r in results.items():
        r["instructions_ratio_to"] = {
            other: counts[name] / counts[other] for other in counts if counts[name] and counts[other]
        }


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def _heat(before: dict, machine) -> dict:
    """Thermal zones before and after the run, and a warning for each that reached its trip point."""
    if not before:
        return {}
    after = machine.thermal()
    return {"thermal_before": before, "thermal_after": after, "warnings": machine.throttle_warnings(before, after)}


def _peak_info(cfg: BenchConfig, peak, peak_rounds: list) -> dict | None:
    if peak is not None:
        p50 = float(np.median(np.concatenate(peak_rounds)))
        return {"gflops_per_s": peak.flops / (p50 / 1e3) / 1e9, "source": f"measured in this run: {peak.kernel}"}
    if cfg.peak_gflops:
        return {"gflops_per_s": float(cfg.peak_gflops), "source": "given (--peak-gflops)"}
    return None


def _ratios(
    results: dict, state: str, baseline: str, batches, rounds: dict, processes: int = 1, into: str | None = None
) -> None:
    """p50 of each artifact over the baseline's (the first model of the run), and over every
    other artifact's, per batch size, in one latency state (`compute`: hot, `loop`): all
    measured in this run. `p50_ratio_ci` is the 95% interval of each ratio: from a paired
    bootstrap over rounds, or with several processes over the ratios each process measured
    (`p50_ratio_processes`; benchmarks/intervals.py); `p50_ratio_rounds` the 10th and 90th
    percentile of the ratio taken round by round. Written into each artifact's results, or
    into its `into` dict."""
    p50 = {n: {str(b): r["latency"][state][str(b)]["p50_ms"] for b in batches} for n, r in results.items()}
    per_round = {n: {str(b): np.array([np.median(t) for t in rounds[n][b]]) for b in batches} for n in results}
    intervals, by_process = _intervals(results, batches, rounds, processes)
    for name, full in results.items():
        r = full[into] if into else full
        r["p50_ratio"] = {b: p50[name][b] / p50[baseline][b] for b in p50[name]}
        r["p50_ratio_to"] = {other: {b: p50[name][b] / p50[other][b] for b in p50[name]} for other in p50}
        r["p50_ratio_ci"] = {other: {b: intervals(b, name, other) for b in p50[name]} for other in p50}
        if by_process:
            r["p50_ratio_processes"] = {
                other: {b: (by_process[b][name] / by_process[b][other]).tolist() for b in p50[name]} for other in p50
            }
        r["p50_ratio_rounds"] = {
            other: {b: _spread(per_round[name][b] / per_round[other][b]) for b in p50[name]} for other in p50
        }


def _intervals(results: dict, batches, rounds: dict, processes: int):
    """interval(batch, name, other) for the ratios, and each process's p50 per artifact and batch
    ({} with one process). A process's rounds are a fixed-length slice of the run's rounds."""
    from fsanet.benchmarks.intervals import between_processes, ratio_interval, resampled_p50

    if processes == 1:
        boot = {str(b): resampled_p50({n: rounds[n][b] for n in results}) for b in batches}
        return (lambda b, name, other: ratio_interval(boot[b][name], boot[b][other])), {}
    by_process = {
        str(b): {n: np.array([np.median(np.concatenate(s)) for s in _slices(rounds[n][b], processes)]) for n in results}
        for b in batches
    }

    def interval(b, name, other):
        return between_processes(by_process[b][name] / by_process[b][other])

    return interval, by_process


def _slices(items: list, parts: int) -> list[list]:
    size = len(items) // parts
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def _spread(ratios: np.ndarray) -> dict:
    p10, p90 = np.percentile(ratios, [10, 90])
    return {"p10": float(p10), "p90": float(p90), "rounds": len(ratios)}
