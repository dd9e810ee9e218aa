"""The script the emulated aarch64 Python runs (`fsanet arm`): `fsanet check` on a kit made on
x86, with the runtime-only install, then what the machine and each runtime say of the
instruction set and kernels they used.

    python3.11 -m fsanet.benchmarks.emulated_check KIT OUT_DIR

writes OUT_DIR/check/ (check.json, check.md: the kit's own report, without latency) and
OUT_DIR/runtime.json. Under qemu-user without binfmt_misc a child process cannot run, so any
attempt to start one is refused and fails the run: what passes here starts no process on a
device either. No torch, TensorFlow or JAX may be imported; no time is measured.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty"}
HEAVY = ("torch", "tensorflow", "jax")
attempts: list[str] = []


def refuse_processes() -> None:
    """An audit hook that records and refuses every attempt to start a process. The error is
    no OSError, so a library that tolerates a missing tool (ctypes.util.find_library) cannot
    swallow it; attempts are also recorded, and any at all fails the run at the end."""

    def hook(event: str, args: tuple) -> None:
        if event in SPAWN_EVENTS:
            attempts.append(f"{event} {args[0]!r}" if args else event)
            raise RuntimeError(f"{event}: the emulated machine runs no other process ({args[0]!r})")

    sys.addaudithook(hook)


def machine() -> dict:
    """The CPU as the emulated kernel presents it (qemu's /proc/cpuinfo: part number and the
    feature flags, which is what the runtimes' CPU detection reads too): the parts of
    fsanet.machine.fingerprint that are the guest's own (caches, governor and cores would be
    the host's)."""
    import os
    import platform

    from fsanet import machine as host

    info = host._cpuinfo()
    uname = os.uname()
    return {
        "cpu": host.cpu_model(info),
        "cpu_part": info.get("CPU part"),  # what qemu models: 0xd03 Cortex-A53, 0xd08 A72, 0xd0c Neoverse-N1
        "arch": platform.machine(),
        "isa": host.isa_features(info),
        "features": info.get("Features", "").split(),
        "system": f"{uname.sysname} {uname.release} (the host's kernel, under qemu-user)",
        "python": platform.python_version(),
        "libraries": host.libraries(),
    }


def onnx_kernels(trace: str) -> dict[str, dict[str, int]]:
    """From ONNX Runtime's profile: per execution provider, how many graph nodes ran each kernel
    (op type); the provider and op type are what ONNX Runtime reports for each node."""
    nodes: dict[str, tuple[str, str]] = {}
    for event in json.loads(Path(trace).read_text()):
        args = event.get("args") or {}
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time") and "op_name" in args:  # not the fences
            nodes[name.removesuffix("_kernel_time")] = (args.get("provider", "?"), args["op_name"])
    out: dict[str, Counter] = {}
    for provider, op in nodes.values():
        out.setdefault(provider, Counter())[op] += 1
    return {p: dict(sorted(c.items())) for p, c in sorted(out.items())}


def runtime_info(path: Path, crop) -> dict:
    """What runs the file (providers, delegate partitions) and, for ONNX, the kernels (op types
    per execution provider) of one profiled inference."""
    from fsanet import runtimes

    onnx = path.suffix.lower() == ".onnx"
    options = {"profile_prefix": str(Path.cwd() / f"ort-profile-{path.stem}")} if onnx else {}
    with runtimes.open(path, threads=1, **options) as rt:
        rt.predict(crop)
        info = {"backend": rt.backend, "precision": rt.precision, "executes_on": rt.executes_on()}
        if onnx:
            trace = rt.end_profiling()
            info["kernels"] = onnx_kernels(trace)
            Path(trace).unlink()
    return info


def main(argv: list[str] | None = None) -> int:
    refuse_processes()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[4].strip(), file=sys.stderr)
        return 2
    from fsanet.kit.layout import Bundle

    from fsanet.cli import main as fsanet
    from fsanet.files import atomic_write, json_text

    kit, out = Path(args[0]), Path(args[1])
    with open(out / "check-stdout.txt", "w") as printed, redirect_stdout(printed):  # the log keeps what runtimes say
        code = fsanet(["check", str(kit), "--no-latency", "-o", str(out / "check")])
    if code not in (0, 1):  # 1: a limit missed, which the host reports; anything else is an error
        return code
    bundle = Bundle(kit)
    crop = bundle.golden().crops[:1]
    infos = {a.name: runtime_info(a.path, crop) for a in bundle.artifacts()}
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    if heavy or attempts:
        print(f"[fsanet] refused: heavy imports {heavy}, process starts {attempts}", file=sys.stderr)
        return 3
    record = {"machine": machine(), "artifacts": infos, "check_exit": code, "process_starts": attempts}
    atomic_write(out / "runtime.json", lambda tmp: Path(tmp).write_text(json_text(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
