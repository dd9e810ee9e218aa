"""The latency phases of `fsanet bench --processes N`: N fresh processes, one after another.

Two runs of the same bench on one machine can disagree by more than either run's own interval
(two `make ports` runs on a Zen 3 VM: fused/FOXTracker 1.11 [1.09-1.15] and 1.17 [1.13-1.23]),
because what decides a ratio is partly fixed for the life of a process: where the allocator put
each model's weights and buffers (cache-set and page conflicts), and the minutes it ran in. A
bootstrap over one process's rounds cannot see that. Splitting the runs over fresh processes
(spawned, so each has its own address space and allocator state) turns it into variation
between processes, which the interval over processes (`intervals.between_processes`) takes in.
Processes run one after another, never side by side: they would share the cores.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
from dataclasses import replace

import numpy as np

POLL_S = 5.0  # how often a silent child is checked for having died


def share(cfg):
    """The BenchConfig each process runs: its share of the runs, the processes count left at 1."""
    return replace(cfg, runs=max(cfg.runs // cfg.processes, 1), processes=1)


def run_in_processes(models: list[str], names: list[str], crops: np.ndarray, cfg, progress) -> tuple[dict, list]:
    """`bench._latency` in `cfg.processes` spawned processes, each on `share(cfg)`. Returns the same
    {state: {name: {batch: [rounds]}}} with the processes' rounds in order (each process adds
    the same number, so a process is a fixed-length slice) and the peak GEMM's samples."""
    ctx = multiprocessing.get_context("spawn")
    times = {state: {n: {b: [] for b in cfg.batches} for n in names} for state in ("hot", "loop")}
    peak_times = []
    for i in range(cfg.processes):
        channel = ctx.Queue()
        child = ctx.Process(target=_child, args=(models, names, crops, share(cfg), channel), daemon=True)
        child.start()
        part, peak_part = _collect(channel, child, i, progress)
        child.join()
        for state, by_name in part.items():
            for name, by_batch in by_name.items():
                for b, rounds in by_batch.items():
                    times[state][name][b] += rounds
        peak_times += peak_part
    return times, peak_times


def _collect(channel, child, index: int, progress) -> tuple[dict, list]:
    while True:
        try:
            message = channel.get(timeout=POLL_S)
        except queues.Empty:
            if not child.is_alive():
                raise RuntimeError(f"bench: latency process {index + 1} died (exit code {child.exitcode})") from None
            continue
        kind, *payload = message
        if kind == "step":
            if progress is not None:
                progress.update(payload[0])
        elif kind == "done":
            return payload[0], payload[1]
        else:
            raise RuntimeError(f"bench: latency process {index + 1} failed: {payload[0]}")


class _Steps:
    """The child's progress, sent to the parent's bar."""

    def __init__(self, channel):
        self.channel = channel

    def update(self, n: int = 1) -> None:
        self.channel.put(("step", n))


def _child(models: list[str], names: list[str], crops: np.ndarray, cfg, channel) -> None:
    try:
        from fsanet.benchmarks.bench import _latency, _open, _peak_kernel

        rts = {name: _open(model, cfg) for name, model in zip(names, models, strict=True)}
        times, peak_times = _latency(rts, crops, cfg, _Steps(channel), _peak_kernel(cfg))
        for rt in rts.values():
            rt.close()
        channel.put(("done", times, peak_times))
    except BaseException as e:  # the parent names it; a child traceback would be lost anyway
        channel.put(("error", f"{type(e).__name__}: {e}"))
