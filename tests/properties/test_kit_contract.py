"""Property tests of `fsanet check` on hostile kits: random bytes and random JSON as bundle.json,
random text as SHA256SUMS, random bytes and random arrays as golden.npz. Whatever the kit holds,
the check exits 0, 1 or 2 (never 3), with no traceback, and a refusal is one line on stderr that
names the kit's file. Each example edits a copy of one tiny kit built once per module (a tiny ONNX
model on 4 synthetic heads) and, like a forger who controls the whole kit, rewrites the hashes
that would otherwise refuse it first, so that the parser under test is reached.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

CONTRACT = settings(settings.get_profile("fsanet-contract"), max_examples=25)  # tests/properties/conftest.py
TRACEBACK = "Traceback (most recent call last)"
CHECK = ["--no-latency", "--runs", "1", "--warmup", "0"]


@pytest.fixture(scope="module")
def template(tmp_path_factory, make_onnx) -> Path:
    from fsanet.kit.bundle import make_bundle
    from fsanet.kit.wheel import build_wheel, source_tree

    root = tmp_path_factory.mktemp("kit-contract")
    wheel = build_wheel(source_tree(), root)
    model = f"{make_onnx(root / 'mean.onnx')}@nchw,bgr,raw"
    make_bundle([model], root / "kit", count=4, reference=model, wheel=wheel)
    return root / "kit"


def copy_kit(template: Path) -> Path:
    """A copy of the kit (the 9 MB wheel, never written by an example, hard-linked)."""
    dest = Path(tempfile.mkdtemp()) / "kit"

    def link_or_copy(src, dst):
        return os.link(src, dst) if src.endswith(".whl") else shutil.copy2(src, dst)

    return Path(shutil.copytree(template, dest, copy_function=link_or_copy))


def reseal(kit: Path, files: bool) -> None:
    """Rewrite bundle.json's `files` (where it is still an object and `files`) and SHA256SUMS."""
    from fsanet.kit import layout

    from fsanet.files import json_text, sha256

    try:
        manifest = json.loads((kit / layout.MANIFEST).read_bytes())
    except (ValueError, RecursionError):
        manifest = None
    names = sorted(p.name for p in kit.iterdir() if p.name not in (layout.MANIFEST, layout.SUMS))
    if files and isinstance(manifest, dict):
        manifest["files"] = {n: sha256(kit / n) for n in names}
        (kit / layout.MANIFEST).write_text(json_text(manifest))
    (kit / layout.SUMS).write_text(layout.sums_text({n: sha256(kit / n) for n in [*names, layout.MANIFEST]}))


def check(kit: Path, capsys, names: tuple[str, ...]) -> int:
    """`fsanet check KIT` in-process: exit 0, 1 or 2, no traceback, a refusal names a kit file."""
    from fsanet.cli import main

    capsys.readouterr()
    try:
        code = main(["check", str(kit), *CHECK, "-o", str(kit.parent / "rep")])
    except BaseException as e:  # noqa: BLE001 - escaping main is the failure under test
        raise AssertionError(f"{type(e).__name__} escaped main: {str(e)[:300]}") from e
    err = capsys.readouterr().err
    note(f"exit {code}; stderr: {err.strip()[-300:]!r}")
    assert code in (0, 1, 2), f"exit {code}: {err.strip()[-300:]!r}"
    assert TRACEBACK not in err
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, lines[:4]
        assert any(n in lines[0] for n in names), lines[0]
    shutil.rmtree(kit.parent)
    return code


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(obj, prefix=()) -> list[tuple]:
    """Every key path into the JSON object `obj`."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += paths(v, (*prefix, k))
    return out


@st.composite
def manifest_bytes(draw, manifest: dict) -> bytes:
    """Random bytes, random JSON, deep nesting, or the kit's own bundle.json with fields replaced,
    removed or added."""
    how = draw(st.sampled_from(["bytes", "json", "deep", "edit", "edit", "edit"]))
    if how == "bytes":
        return draw(st.binary(max_size=300))
    if how == "json":
        return json.dumps(draw(JSON)).encode()
    if how == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 1000, 5000]))
        return (draw(st.sampled_from(["[", '{"a":'])) * depth).encode()
    m = json.loads(json.dumps(manifest))
    for _ in range(draw(st.integers(1, 3))):
        *parent, key = draw(st.sampled_from(paths(m) or [("x",)]))
        holder = m
        for k in parent:
            holder = holder[k]
        if draw(st.booleans()) or not isinstance(holder, dict):
            holder[key] = draw(JSON)
        else:
            holder.pop(key, None)
    return json.dumps(m).encode()


@given(data=st.data())
@settings(CONTRACT, max_examples=60)
def test_any_bundle_json_exits_0_1_or_2(template, capsys, data):
    manifest = json.loads((template / "bundle.json").read_text())
    kit = copy_kit(template)
    (kit / "bundle.json").write_bytes(data.draw(manifest_bytes(manifest)))
    reseal(kit, files=data.draw(st.booleans()))
    check(kit, capsys, ("bundle.json",))


@st.composite
def sums_bytes(draw, sums: str) -> bytes:
    lines = sums.splitlines()
    how = draw(st.sampled_from(["bytes", "text", "drop", "add", "swap"]))
    if how == "bytes":
        return draw(st.binary(max_size=400))
    if how == "text":
        return draw(st.text(max_size=300)).encode()
    if how == "drop":
        del lines[draw(st.integers(0, len(lines) - 1))]
    elif how == "add":
        name = draw(st.one_of(st.sampled_from(["x", "../x", "/etc/passwd", "SHA256SUMS", "a b"]), st.text(max_size=8)))
        lines.insert(draw(st.integers(0, len(lines))), f"{draw(st.sampled_from(['0' * 64, 'z' * 64, '']))}  {name}")
    else:
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][:64] + draw(st.sampled_from([" ", "  ", " *", "\t"])) + lines[i][66:]
    return ("\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))).encode()


@given(data=st.data())
@settings(CONTRACT, max_examples=25)
def test_any_sha256sums_exits_0_1_or_2(template, capsys, data):
    kit = copy_kit(template)
    (kit / "SHA256SUMS").write_bytes(data.draw(sums_bytes((template / "SHA256SUMS").read_text())))
    check(kit, capsys, ("SHA256SUMS",))


@st.composite
def golden_bytes(draw) -> bytes:
    """Random bytes, or an .npz with the golden fields at random shapes, dtypes and values."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=400))
    n = draw(st.sampled_from([4, 4, 4, 0, 1, 5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtypes = st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "<U3", "complex64"])
    shapes = {
        "crops": st.sampled_from([(n, 64, 64, 3)] * 4 + [(n, 64, 64), (64, 64, 3), (n, 3, 64, 64), ()]),
        "reference": st.sampled_from([(n, 3), (n, 3), (n, 2), (n,), (n + 1, 3)]),
        "labels": st.sampled_from([(n, 3), (n, 3), (3,), (n, 4)]),
        "names": st.sampled_from([(n,), (n,), (n, 1), ()]),
    }
    fields = {}
    for name, shape in shapes.items():
        if draw(st.integers(0, 5)) == 0:
            continue  # missing
        with np.errstate(all="ignore"):
            a = rng.uniform(-100, 255, draw(shape))
            if a.size and draw(st.booleans()):
                a.flat[0] = draw(st.sampled_from([np.nan, np.inf, 1e300, -1.0]))
            usual = {"crops": "uint8", "names": "<U3"}.get(name, "float32")
            fields[name] = a.astype(draw(dtypes) if draw(st.integers(0, 3)) == 0 else usual)
    if draw(st.booleans()):
        fields[draw(st.from_regex(r"[a-z]{1,6}", fullmatch=True))] = rng.normal(size=3)
    buf = io.BytesIO()
    np.savez(buf, **fields)
    return buf.getvalue()


@given(data=st.data())
@settings(CONTRACT, max_examples=50)
def test_any_golden_npz_exits_0_1_or_2(template, capsys, data):
    kit = copy_kit(template)
    (kit / "golden.npz").write_bytes(data.draw(golden_bytes()))
    reseal(kit, files=True)
    check(kit, capsys, ("golden.npz",))
