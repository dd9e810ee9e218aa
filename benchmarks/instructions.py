"""Instructions per face, counted by valgrind: a latency proxy that the neighbours cannot move.

Wall time on a shared runner depends on what else runs there; the number of instructions a
model executes does not. A child process runs under `valgrind --tool=callgrind` with one
backend thread (no spinning): it opens the model, prepares the faces, runs `warmup`
inferences, then `runs` inferences on other faces. Callgrind dumps its counters each time
the child enters `time.sleep` (the C function `time_sleep`, `--dump-before`): the child calls
it after the warm-up and after each inference, so each later dump holds one inference alone,
and the count per face is their median. Start-up is left out on purpose: ONNX Runtime's
session set-up varies by ~170 M instructions from one process to the next (graph optimisation
order). The first inferences of a session still do one-off work (up to +35% each, at
positions that change from process to process: a 10-inference total after one warm-up moved by
15%). Most of that is not the inference: ONNX Runtime frees memory in a thread of its own
(1.5 M instructions of `free` landing in whichever inference it overlaps), so only the calling
thread is counted (`--separate-threads`), the one that runs every kernel with one backend
thread. Ten warm-up inferences, the median, and the cyclic garbage collector switched off in
the timed part keep out what is left.
Valgrind emulates the CPU and masks AVX-512, so on x86 these are the counts of the AVX2
kernels, whatever the host has: they rank kernels and models, they are not the host's own code
path. Valgrind is a system package (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fsanet.errors import DataError

INSTALL = "apt-get install valgrind (Debian/Ubuntu; valgrind is a system package, not a pip one)"
NOTE = "valgrind callgrind, 1 backend thread; x86: the AVX2 kernels (valgrind masks AVX-512)"


def valgrind() -> str:
    exe = shutil.which("valgrind")
    if exe is None:
        raise DataError(f"--instructions: valgrind is not installed; install it with: {INSTALL}")
    return exe


def _total(out_file: Path) -> int:
    text = out_file.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if not found:
        raise DataError(f"{out_file}: no instruction total in callgrind's output")
    return int(found.group(1))


def _count(model: str, faces: Path, warmup: int, runs: int, workdir: Path) -> list[int]:
    out = workdir / "callgrind.out"
    cmd = [valgrind(), "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=time_sleep",
           "--separate-threads=yes", "--dump-instr=no", "--compress-strings=no",
           sys.executable, "-m", "fsanet.benchmarks.instructions",
           model, str(faces), str(warmup), str(runs)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise DataError(f"{model}: the instruction count failed under valgrind ({last})")
    # dump 1: start-up and warm-up; dump k + 1: inference k alone, in the calling thread (-01),
    # which runs every kernel with one backend thread
    timed = [Path(f"{out}.{k + 1}-01") for k in range(1, runs + 1)]
    if not all(p.is_file() for p in timed):
        raise DataError(
            f"{model}: valgrind found no `time_sleep` in this Python (stripped of its symbols?); "
            "instruction counts need a Python with symbols, as python.org's and pyenv's builds have"
        )
    return [_total(p) for p in timed]


def count_instructions(model: str, crops: np.ndarray, runs: int = 10, warmup: int = 10) -> dict:
    """Instructions per batch-1 inference of `model` (path, optionally `path@format`): the
    median of `runs` inferences, each counted alone, on faces of `crops` after `warmup`."""
    if runs < 1 or warmup < 1 or len(crops) == 0:
        raise DataError("instruction count: needs at least one run and one face")
    with tempfile.TemporaryDirectory(prefix="fsanet-instructions-") as tmp:
        faces = Path(tmp) / "faces.npy"
        np.save(faces, np.resize(crops, (warmup + runs, *crops.shape[1:])))
        counts = _count(model, faces, warmup, runs, Path(tmp))
    return {
        "per_face": float(np.median(counts)),
        "min": min(counts),
        "max": max(counts),
        "runs": runs,
        "warmup": warmup,
        "method": NOTE,
    }


def main() -> None:
    """The child: `warmup` inferences, then `runs` more, each followed by time.sleep(0)
    (where the parent's valgrind dumps its counters)."""
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("faces")
    p.add_argument("warmup", type=int)
    p.add_argument("runs", type=int)
    args = p.parse_args()
    from fsanet import runtimes

    crops = np.load(args.faces)
    with runtimes.open(args.model, threads=1, spinning=False) as rt:
        inputs = [rt.input_format.prepare(crops[i : i + 1]) for i in range(len(crops))]
        for x in inputs[: args.warmup]:
            rt.infer(x)
        gc.disable()  # a collection would land in one inference's count
        time.sleep(0)  # dump 1: start-up and warm-up
        for i in range(args.runs):
            rt.infer(inputs[args.warmup + i])
            time.sleep(0)  # dump i + 2: this inference alone


if __name__ == "__main__":
    main()
