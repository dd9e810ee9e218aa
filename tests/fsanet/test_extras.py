"""The extra named for a missing library comes from the package metadata, i.e. pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

from fsanet.extras import _closure, extra_for

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _dists(extra: str) -> set[str]:
    out = set()
    for req in EXTRAS[extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")
        if name != "fsanet-edge":
            out.add(name)
    return out


@pytest.mark.parametrize("extra", sorted(set(EXTRAS) - {"dev", "all"}))
def test_every_library_of_an_extra_is_found_in_an_extra_that_installs_it(extra):
    for dist in _dists(extra):
        module = {"cuda-python": "cuda", "opencv-python-headless": "cv2"}.get(dist, dist.replace("-", "_"))
        named = extra_for(module)
        assert named is not None and dist in _closure(named), (dist, named)


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [
        ("bench", "tqdm", "bench"),  # the command's own extra when it holds the library
        ("eval", "tqdm", "torch"),  # else the smallest extra that does
        ("predict", "ai_edge_litert.interpreter", "tflite"),
        ("eval", "scipy.io", "data"),
        ("export", "litert_torch", "tflite-export"),
        ("bench", "numpy", None),  # core dependencies are no extra's
        ("predict", "cv2", None),
    ],
)
def test_extra_for_a_command(command, module, extra):
    assert extra_for(module, command) == extra
