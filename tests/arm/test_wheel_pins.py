"""How `fsanet arm` asks pip for the aarch64 wheels: the constraints that hold them to this
environment's versions, and what it does when pip fails (all offline, real pip)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fsanet.arm import INDEX_FAILURE, _run, constraints_here
from fsanet.errors import DataError

PROBE = """
import json, setuptools  # torch's export imports it: it appends setuptools/_vendor to sys.path
from importlib.metadata import distributions
from fsanet.arm import constraints_here
copies = {}
for d in distributions():
    copies.setdefault(d.metadata["Name"].lower(), []).append(d.version)
print(json.dumps({"copies": copies, "pins": constraints_here()}))
"""


def test_constraints_pin_each_name_once_even_after_setuptools_is_imported():
    """The CI failure (pip: ResolutionImpossible for onnxruntime==1.32.0): after `import
    setuptools`, sys.path shows a second, older packaging; pinning both made onnxruntime's
    `packaging` dependency unsatisfiable."""
    out = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
    assert len(out["copies"]["packaging"]) == 2  # the situation: two copies on sys.path
    names = [re.sub(r"[-_.]+", "-", p.split("==")[0]).lower() for p in out["pins"]]
    assert names and not [n for n, k in Counter(names).items() if k > 1]
    from importlib.metadata import version

    pins = dict(p.lower().split("==") for p in out["pins"])
    assert pins["packaging"] == version("packaging") and pins["onnxruntime"] == version("onnxruntime")
    assert "fsanet-edge" not in names


def test_constraints_are_this_environment_only():
    pins = constraints_here()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", p) for p in pins)
    assert not any(p.lower().startswith(("fsanet-edge==", "fsanet_edge==")) for p in pins)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args]


def test_a_conflict_is_explained_and_not_retried(tmp_path):
    """Two pins of one name, as the CI failure had: the error names the conflict (pip prints it
    only at its info level, on stdout) and keeps one log; a conflict is not a network failure."""
    constraints = tmp_path / "c.txt"
    constraints.write_text("packaging==26.3\npackaging==26.4\n")
    cmd = _pip("install", "--dry-run", "--ignore-installed", "--no-index", "-c", str(constraints), "packaging")
    with pytest.raises(DataError) as caught:
        _run(cmd, "pip install (probe)", retry=INDEX_FAILURE)
    message = str(caught.value)
    assert "ResolutionImpossible" in message and "the conflict:" in message and "==26.3,==26.4" in message
    assert "twice" not in message
    logs = re.findall(r"/\S+fsanet-arm-\S+\.log", message)
    assert len(logs) == 1 and "The conflict is caused by:" in Path(logs[0]).read_text()
    Path(logs[0]).unlink()


def test_an_index_that_does_not_answer_gets_one_more_try_with_both_logs_kept(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = _pip("download", "--no-deps", "--retries", "1", "--timeout", "2", "--index-url",
               f"http://127.0.0.1:{port}/simple", "-d", str(tmp_path), "onnxruntime")  # fmt: skip
    with pytest.raises(DataError) as caught:
        _run(cmd, "pip download (probe)", retry=INDEX_FAILURE)
    message = str(caught.value)
    assert "failed twice (the first a network failure)" in message
    logs = re.findall(r"/\S+fsanet-arm-\S+\.log", message)
    assert len(logs) == 2 and all("Retrying (Retry(" in Path(log).read_text() for log in logs)
    for log in logs:
        Path(log).unlink()
