"""The machine fingerprint: what a latency figure measured here belongs to."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from fsanet import machine


def cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def test_fingerprint_of_this_machine():
    fp = machine.fingerprint(threads=1)
    assert fp["arch"] == platform.machine() and fp["cores"] == os.cpu_count() and fp["threads_used"] == 1
    assert 1 <= fp["cores_usable"] <= fp["cores"]
    flags = cpuinfo_flags()
    listed = machine.X86_FEATURES if fp["arch"] == "x86_64" else machine.ARM_FEATURES
    assert fp["isa"] == [f for f in listed if f in flags]  # exactly the kernels' features this CPU has
    if fp["arch"] == "x86_64":
        assert "family" in fp["cpu"]  # a VM's bare "AMD EPYC" still tells Zen 3 from Zen 4
    assert machine.cache_bytes(fp["caches"]["L2"]) >= 64 << 10 and "L3" in fp["caches"]
    assert fp["libraries"]["onnxruntime"] and fp["libraries"]["numpy"]
    line = machine.describe(fp)
    assert fp["cpu"] in line and "L2 " in line and "onnxruntime" in line


def test_cache_sizes_parse():
    assert machine.cache_bytes("512K") == 512 * 1024 and machine.cache_bytes("32M") == 32 << 20
    assert machine.cache_bytes("weird") is None


def test_throttle_warning_when_a_zone_reaches_its_trip_point():
    before = {"cpu-thermal": {"celsius": 60.0, "trip_celsius": 95.0}}
    hot = {"cpu-thermal": {"celsius": 96.5, "trip_celsius": 95.0}}
    assert machine.throttle_warnings(before, before) == []
    assert machine.throttle_warnings(before, hot) == ["thermal zone cpu-thermal at 96 C (was 60.0), trip point 95 C"]
