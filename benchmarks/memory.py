"""Peak memory of one model in a fresh process: `python -m fsanet.benchmarks.memory MODEL`.

Run in its own interpreter so that artifacts measured side by side do not share a high-water
mark; prints JSON: resident memory after imports (the peak is reset there) and the peak
resident memory after loading the model and running it; their difference is the model's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: high-water mark


def _reset_peak() -> None:
    try:  # Linux: writing 5 resets the peak resident size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure(model: str, batch: int, threads: int | None, runs: int = 5) -> dict:
    cmd = [sys.executable, "-m", "fsanet.benchmarks.memory", model, "--batch", str(batch), "--runs", str(runs)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    from fsanet import runtimes

    path, fmt = runtimes.split_spec(args.model)
    runtimes.preload(path)  # the backend library first: the baseline holds it, the peak is the model's
    _reset_peak()
    baseline = _status_mb("VmRSS")
    with runtimes.open(args.model, threads=args.threads) as rt:
        size = rt.input_format.size
        x = rt.input_format.prepare(np.zeros((args.batch, size, size, 3), np.uint8))
        for _ in range(args.runs):
            rt.infer(x)
    peak = _status_mb("VmHWM")
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "model_mb": peak - baseline}))


if __name__ == "__main__":
    main()
