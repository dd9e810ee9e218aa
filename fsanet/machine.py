"""The machine a measurement belongs to: its fingerprint, written into every report and manifest.

Latency figures do not carry over between machines (a Zen 4 with AVX-512 VNNI ran LiteRT INT8
faster than FP32, a Zen 3 with AVX2 only slower), so each report says what it ran on: the CPU
model, the instruction-set features the kernels pick from, cores, caches, the frequency
governor, the runtime versions, and on a Jetson its L4T release, power mode and clocks, with
the thermal zones read before and after a run (a warning when one passed its trip point).
Reads /proc and /sys only (plus `nvpmodel -q` where it exists); whatever a machine does not
expose is left out, never guessed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

# the features the ONNX Runtime (MLAS) and XNNPACK kernels dispatch on
X86_FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip
ARM_FEATURES = ("asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
LIBRARIES = ("onnxruntime", "ai-edge-litert", "tflite-runtime", "torch", "tensorrt", "numpy", "fsanet-edge")
SYS_CPU = Path("/sys/devices/system/cpu")
THERMAL = Path("/sys/class/thermal")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (and the machine-wide ones on Arm)."""
    out: dict[str, str] = {}
    for line in (_read(Path("/proc/cpuinfo")) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def cpu_model(info: dict[str, str]) -> str:
    if info.get("model name"):  # a VM may say only "AMD EPYC": family and model tell Zen 3 from Zen 4
        family = f" (family {info['cpu family']} model {info.get('model', '?')})" if "cpu family" in info else ""
        return info["model name"] + family
    if "CPU part" in info:  # Arm: implementer and part numbers (0x41/0xd42 = Arm Cortex-A78AE)
        return f"implementer {info.get('CPU implementer', '?')} part {info['CPU part']}"
    return platform.processor() or platform.machine()


def isa_features(info: dict[str, str]) -> list[str]:
    flags = set((info.get("flags") or info.get("Features") or "").split())
    wanted = X86_FEATURES if "flags" in info else ARM_FEATURES
    return [f for f in wanted if f in flags]


def caches() -> dict[str, str]:
    """L1d/L2/L3 sizes of cpu0 as the kernel reports them (e.g. {'L2': '512K', 'L3': '32768K'})."""
    out = {}
    for index in sorted((SYS_CPU / "cpu0" / "cache").glob("index*")):
        level, kind, size = (_read(index / f) for f in ("level", "type", "size"))
        if level and size and kind != "Instruction":
            out[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return out


def cache_bytes(size: str | None) -> int | None:
    """'512K' -> 524288."""
    found = re.fullmatch(r"(\d+)([KMG]?)", size or "")
    if not found:
        return None
    return int(found.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[found.group(2)]


def libraries() -> dict[str, str]:
    """Versions of the runtimes that are installed (read from metadata, nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def thermal() -> dict[str, dict]:
    """Each thermal zone's temperature (degrees C) and its lowest passive/hot trip point."""
    out = {}
    for zone in sorted(THERMAL.glob("thermal_zone*")):
        temp = _read(zone / "temp")
        if temp is None or not temp.lstrip("-").isdigit():
            continue
        trips = []
        for t in zone.glob("trip_point_*_type"):
            if _read(t) in ("passive", "hot"):
                value = _read(t.with_name(t.name.replace("_type", "_temp")))
                if value and value.lstrip("-").isdigit():
                    trips.append(int(value) / 1000)
        name = _read(zone / "type") or zone.name
        out[name] = {"celsius": int(temp) / 1000, "trip_celsius": min(trips) if trips else None}
    return out


def throttle_warnings(before: dict, after: dict) -> list[str]:
    """Zones that reached their trip point during a run: its latency is not the steady state."""
    warnings = []
    for name, now in after.items():
        trip = now.get("trip_celsius")
        if trip is not None and now["celsius"] >= trip:
            was = before.get(name, {}).get("celsius")
            warnings.append(f"thermal zone {name} at {now['celsius']:.0f} C (was {was}), trip point {trip:.0f} C")
    return warnings


def jetson() -> dict | None:
    """L4T release, power mode, clocks of a Jetson; None elsewhere."""
    release = _read(Path("/etc/nv_tegra_release"))
    if release is None:
        return None
    out: dict = {"l4t": release.splitlines()[0]}
    if shutil.which("nvpmodel"):
        q = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
        out["nvpmodel"] = " ".join(q.stdout.split()) or q.stderr.strip()
    for name, path in (("gpu_clock_hz", "/sys/devices/gpu.0/devfreq/17000000.gpu/cur_freq"),
                       ("emc_clock_hz", "/sys/kernel/debug/bpmp/debug/clk/emc/rate")):  # fmt: skip
        value = _read(Path(path))
        if value:
            out[name] = value
    cur, top = (_read(SYS_CPU / "cpu0" / "cpufreq" / f) for f in ("scaling_cur_freq", "scaling_max_freq"))
    if cur and top:  # jetson_clocks pins the CPU at its maximum
        out["cpu_at_max_clock"] = cur == top
    return out


def system() -> str:
    """platform.platform()'s text without its `uname -p` child process (Python runs one for the
    processor field), which a runtime-only device under qemu-user without binfmt_misc cannot start."""
    u = platform.uname()  # system, release, machine: the lazily read processor field stays unread
    libc = "".join(platform.libc_ver())
    return f"{u.system}-{u.release}-{u.machine}" + (f"-with-{libc}" if libc else "")


def fingerprint(threads: int | None = None) -> dict:
    """What a figure measured here depends on. `threads`: the threads the run used."""
    info = _cpuinfo()
    out = {
        "cpu": cpu_model(info),
        "arch": platform.machine(),
        "isa": isa_features(info),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads_used": threads,
        "caches": caches(),
        "governor": _read(SYS_CPU / "cpu0" / "cpufreq" / "scaling_governor"),
        "system": system(),
        "python": platform.python_version(),
        "libraries": libraries(),
    }
    board = jetson()
    if board:
        out["jetson"] = board
    return out


def describe(fp: dict) -> str:
    """One line for a Markdown report."""
    caches_text = ", ".join(f"{k} {v}" for k, v in fp.get("caches", {}).items())
    isa = " ".join(fp.get("isa") or []) or "none of the listed"
    line = f"{fp['cpu']} ({fp['arch']}; ISA: {isa}; {fp['cores_usable']} of {fp['cores']} cores usable"
    if fp.get("threads_used"):
        line += f", {fp['threads_used']} thread(s) used"
    line += f"; {caches_text}" if caches_text else ""
    line += f"; governor {fp['governor']}" if fp.get("governor") else ""
    libs = ", ".join(f"{k} {v}" for k, v in fp.get("libraries", {}).items() if k != "fsanet-edge")
    return line + f"); {libs}" + (f"; Jetson {fp['jetson']}" if fp.get("jetson") else "")
