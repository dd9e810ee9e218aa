"""DLA (the Deep Learning Accelerator of Xavier and Orin AGX/NX): which TensorRT releases build
for it, the one static shape it takes, the builder flags trtexec uses for it, and where TensorRT
put each layer, read from its build log. Pure: no TensorRT needed.

Sources (NVIDIA):
- versions: TensorRT 11.4.1 "Working with DLA" (docs.nvidia.com/deeplearning/tensorrt/11.4.1/
  inference-library/work-with-dla.html): "TensorRT 10.7 was the last 10.x release that supported
  DLA", unavailable in 11.0 through 11.3, and 11.4.1 supports it on Jetson AGX Orin with JetPack
  7.2.2 or later; those builds are strongly typed (no FP16/INT8/precision-constraint flags).
- shapes: "DLA Supported Layers and Restrictions": "DLA does not support dynamic dimensions, so
  the profile's min, max, and opt values must be equal".
- flags on TensorRT 8.5-10.x: trtexec's own DLA set-up (NVIDIA/TensorRT samples/common/
  sampleEngines.cpp at release/8.5 and release/10.3): default device DLA, the core,
  PREFER_PRECISION_CONSTRAINTS, GPU_FALLBACK when allowed else DIRECT_IO ("Reformatting runs on
  GPU, so avoid I/O reformatting"), FP16 unless INT8. trtexec sets these itself for
  --useDLACore, so the trtexec command carries only --useDLACore/--allowGPUFallback.
- placement: "When GPU fallback is enabled, layers that cannot run on DLA silently fall back to GPU
  execution" ("DLA Runtime Configuration"); TensorRT's build log lists them under
  "--------------- Layers running on GPU:" (the output shown in NVIDIA/TensorRT
  samples/sampleCudla/README.md).
"""

from __future__ import annotations

import re

from fsanet.errors import DataError

LAST_10X = (10, 7)  # the last 10.x release with DLA
FIRST_11X = (11, 4, 1)  # DLA again, on Jetson AGX Orin with JetPack 7.2.2 or later
# set by trtexec itself with --useDLACore, so not on its command line
IMPLICIT_IN_TRTEXEC = ("PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "GPU_FALLBACK")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:3])


def check_dla_version(trt_version: str) -> None:
    """Refuse a DLA build on a TensorRT release that has no DLA on Jetson, saying which do."""
    v = _version(trt_version)
    if LAST_10X < v[:2] and v < FIRST_11X:
        raise DataError(
            f"--dla-core: TensorRT {trt_version} cannot build for DLA on a Jetson (NVIDIA: 10.7 was the last 10.x "
            "release with DLA; 11.0-11.4.0 have none; 11.4.1 has it on AGX Orin with JetPack 7.2.2 or later); "
            "build for the GPU (no --dla-core) or use the TensorRT of JetPack 6 (10.3) or 5.1 (8.5.2)"
        )


def strongly_typed_dla(trt_version: str) -> bool:
    """DLA builds are strongly typed from TensorRT 11 on; before, they follow trtexec's weakly
    typed set-up (precision flags)."""
    return _version(trt_version)[:1] >= (11,)


def dla_shapes(input_shape: tuple, batch: int | None) -> tuple[tuple, tuple, tuple]:
    """The one static (min = opt = max) profile a DLA build takes: the ONNX file's own batch when
    it is fixed, else `batch` (default 1)."""
    chw = tuple(input_shape[1:])
    first = input_shape[0]
    fixed = first if isinstance(first, int) and first > 0 else None
    if fixed is not None and batch is not None and batch != fixed:
        raise DataError(f"--dla-core: the ONNX file's batch is fixed at {fixed}; it cannot be built for batch {batch}")
    size = fixed or (1 if batch is None else batch)
    if size < 1:
        raise DataError(f"--dla-core: the DLA batch must be at least 1, got {size}")
    shape = (size, *chw)
    return shape, shape, shape


def dla_flags(strongly_typed: bool, gpu_fallback: bool) -> tuple[str, ...]:
    """The trt.BuilderFlag names a DLA build sets on top of its precision flags."""
    if strongly_typed:  # TensorRT 11: precision constraints are gone with weak typing
        return ("GPU_FALLBACK",) if gpu_fallback else ("DIRECT_IO",)
    return ("PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK" if gpu_fallback else "DIRECT_IO")


_HEADER = re.compile(r"-{3,}\s*Layers running on (DLA|GPU)\s*:?", re.IGNORECASE)
_TAG = re.compile(r"^\[(?:Dla|Gpu)Layer\]\s*")


def _entries(line: str) -> list[str]:
    """Comma-separated layer names, commas inside (), [] or {} kept (TensorRT 7 put a whole list on
    one line; later releases one tagged entry per line, each ending in a comma)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(line[start:i])
            start = i + 1
    parts.append(line[start:])
    return [p.strip() for p in parts if p.strip()]


def placement(messages) -> dict[str, list[str]] | None:
    """Where TensorRT put each layer, from the (severity, message) pairs of a build log: the
    entries under "Layers running on DLA:" and "Layers running on GPU:" (a DLA entry is a
    "{ForeignNode[first...last]}" subgraph). A list ends at a line that is neither tagged
    [DlaLayer]/[GpuLayer] nor the untagged one-line list right after its header. None when the
    log has no such lists."""
    found: dict[str, list[str]] = {}
    current, untagged_ok = None, False
    for _severity, message in messages:
        for line in str(message).splitlines() or [""]:
            header = _HEADER.search(line)
            if header:
                current, untagged_ok = found.setdefault(header.group(1).lower(), []), True
                line = line[header.end() :]
                if not line.strip():
                    continue
            if current is None:
                continue
            text = line.strip()
            if _TAG.match(text):
                current.append(_TAG.sub("", text).rstrip(",").strip())  # one layer per tagged line
                untagged_ok = False
            elif text and untagged_ok:
                current.extend(_entries(text))
                untagged_ok = False
            else:
                current = None
    return {"dla": found.get("dla", []), "gpu": found.get("gpu", [])} if found else None
