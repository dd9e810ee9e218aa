"""Property tests of the contract every command and the Python API keep on bad input.

Command line (`fsanet.cli.main`, called in-process): exit 0 on success, 1 only for a violated
budget (`bench`/`pipeline` with a budget), 2 for bad input or usage, 3 for an internal error,
which random input must never cause; no traceback, and the error is one line on stderr that
names the file or option; after a failure the -o path does not exist (or holds nothing but the
libraries' log that the stage's FAILED line names) and no `.NAME.*.tmp` file is left beside it;
no input file changes. Python API: bad input raises an `FsanetError` subclass, nothing else,
and `PoseEstimator` never returns non-finite angles silently (a runtime's own `predict`
returns the backend's output as it is: `bench` counts such faces).

Everything runs on a tiny ONNX model (global average pool: input (N, 3, 64, 64) -> (N, 3)) and
a few noise photos with `.pts` landmarks made here; no shared data is needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from fsanet.errors import FsanetError

CONTRACT = settings.get_profile("fsanet-contract")  # tests/properties/conftest.py
FEW = settings(CONTRACT, max_examples=12)  # cases that may run a whole (tiny) benchmark
MANY = settings(CONTRACT, max_examples=30)  # pure API calls, milliseconds each

TRACEBACK = "Traceback (most recent call last)"
TMP_FILE = re.compile(r"^\..+\.tmp$")
CHEAP_BENCH = ["--runs", "2", "--warmup", "0", "--no-memory", "--batch", "1"]
DEFAULT_CHECKPOINT = Path(__import__("fsanet").__file__).resolve().parent / "models" / "fsanet-fusion-synthetic.pt"


# -- assets made once -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Assets:
    model: Path  # tiny ONNX without an fsanet manifest
    nan_model: Path  # the same with NaN or -inf angles for every face
    faces: Path  # 3 noise photos with .pts landmarks
    scratch: Path  # one fresh folder per example is made under it

    @property
    def spec(self) -> str:
        return f"{self.model}@nchw,bgr,raw"

    def workdir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.scratch))


def tiny_onnx(path: Path, nan: bool = False) -> Path:
    """Input 'x' (N, 3, 64, 64) -> channel means (N, 3); with `nan`, log(-mean): never finite."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]
    if nan:
        nodes += [helper.make_node("Neg", ["f"], ["n"]), helper.make_node("Log", ["n"], ["y"])]
    else:
        nodes[-1].output[0] = "y"
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def noise_face(folder: Path, stem: str, rng: np.random.Generator, size: int = 200) -> Path:
    import cv2

    image = folder / f"{stem}.jpg"
    assert cv2.imwrite(str(image), rng.integers(0, 256, (size, size, 3), np.uint8))
    pts = rng.uniform(0.3 * size, 0.7 * size, (68, 2))
    (folder / f"{stem}.pts").write_text("".join(f"{x:.3f} {y:.3f}\n" for x, y in pts))
    return image


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Assets:
    root = tmp_path_factory.mktemp("contract-assets")
    faces = root / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        noise_face(faces, f"face{i}", rng)
    models = tiny_onnx(root / "tiny.onnx"), tiny_onnx(root / "nan-angles.onnx", nan=True)
    return Assets(*models, faces, tmp_path_factory.mktemp("contract-work"))


@pytest.fixture(scope="session")
def runtime(assets):
    from fsanet import runtimes

    with runtimes.open(assets.spec) as rt:
        yield rt


# -- running a command and checking the contract ---------------------------------------------------


def sha256_tree(paths) -> dict[str, str]:
    files = {}
    for p in map(Path, paths):
        for f in [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []:
            files[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return files


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:300]


@dataclass
class Case:
    argv: list
    names: list[str]  # the one error line must contain one of these (a file name or an option)
    inputs: list = field(default_factory=list)  # files/folders that must not change
    outputs: list = field(default_factory=list)  # -o paths: absent after a failure
    budget: bool = False  # bench/pipeline with a budget: exit 1 allowed


def run_cli(capsys, case: Case) -> tuple[int, str, str]:
    from fsanet.cli import main

    argv = [str(a) for a in case.argv]
    note(f"fsanet {' '.join(argv)}")
    before = sha256_tree(case.inputs)
    existed = {str(o) for o in case.outputs if Path(o).exists()}
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except Exception as e:  # escapes main: the user sees a traceback
        capsys.readouterr()
        raise AssertionError(f"fsanet {' '.join(argv)}: {type(e).__name__} escaped main: {first_line(e)}") from e
    out, err = capsys.readouterr()
    note(f"exit {code}; stderr: {err.strip()[-400:]!r}")

    allowed = {0, 1, 2} if case.budget else {0, 2}
    assert code in allowed, f"exit {code} (allowed {sorted(allowed)}); stderr: {err.strip()[-300:]!r}"
    assert TRACEBACK not in err, f"a traceback on stderr: {err[-500:]!r}"
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage:") and not ln[0].isspace()]
        assert len(lines) == 1, f"the error must be one line on stderr, got {len(lines)}: {lines[:4]!r}"
        assert any(n in lines[0] for n in case.names), f"the error names none of {case.names}: {lines[0]!r}"
        for o in case.outputs:  # nothing left but the libraries' log that the stage's FAILED line names
            left = [] if str(o) in existed or not Path(o).exists() else sorted(Path(o).rglob("*"))
            files = [f for f in left if f.is_file()]
            named = files and all(f"its log: {f}" in out for f in files) and all(f.suffix == ".log" for f in files)
            assert not left or named, f"{o} was written by a failing command: {[str(f) for f in left]}"
    for o in case.outputs:
        leftovers = [str(f) for f in Path(o).parent.rglob(".*") if TMP_FILE.match(f.name)]
        assert not leftovers, f"temporary files left behind: {leftovers}"
    after = sha256_tree(case.inputs)
    changed = [f for f, h in before.items() if after.get(f) != h]
    assert not changed, f"input files changed or removed: {changed}"
    return code, out, err


# -- strategies ----------------------------------------------------------------------------------

GARBAGE = st.text(st.characters(exclude_categories=("Cs", "Cc", "Nd"), exclude_characters="_"), max_size=8)
FLOAT_TEXT = st.floats(allow_nan=True, allow_infinity=True).map(repr)
SPECIAL_FLOATS = st.one_of(
    st.sampled_from([1e30, -1000.0, 256.0, 255.5, -0.5, 0.0, 255.0, 3e38, 1e300, -1e-30]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """A valid file cut short, or with a few bytes overwritten or inserted."""
    b = bytearray(data)
    how = draw(st.sampled_from(["truncate", "overwrite", "insert"]))
    if how == "truncate":
        return bytes(b[: draw(st.integers(0, len(b) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        pos, value = draw(st.integers(0, len(b) - 1)), draw(st.binary(min_size=1, max_size=8))
        if how == "overwrite":
            b[pos : pos + len(value)] = value
        else:
            b[pos:pos] = value
    return bytes(b)


@st.composite
def int_option(draw, max_valid: int = 3, huge: bool = False) -> tuple[str, str]:
    """(text, expectation) for an integer option: 'ok' must succeed, 'bad' must exit 2, 'either'."""
    choices = [
        st.integers(1, max_valid).map(lambda v: (str(v), "ok")),
        st.integers(-(10**30), 0).map(lambda v: (str(v), "bad")),
        FLOAT_TEXT.map(lambda t: (t, "bad")),
        GARBAGE.map(lambda t: (t, "bad")),
        st.sampled_from([("", "bad"), ("0x1", "bad"), ("1e1", "bad"), ("1.0", "bad"), (" 2", "either")]),
    ]
    if huge:  # more threads than any machine has: honoured by clamping, or refused
        choices.append(st.integers(2**33, 10**30).map(lambda v: (str(v), "either")))
    return draw(st.one_of(choices))


@st.composite
def batch_option(draw) -> tuple[str, str]:
    tokens = draw(st.lists(int_option(), min_size=1, max_size=3))
    expect = "bad" if any(e == "bad" for _, e in tokens) else "ok" if all(e == "ok" for _, e in tokens) else "either"
    if expect == "ok" and len({t for t, _ in tokens}) < len(tokens):
        expect = "either"  # the same batch size twice: refusing it is fine too
    return ",".join(t for t, _ in tokens), expect


def toml_value(draw) -> str:
    v = draw(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-(10**20), 10**20),
            st.booleans(),
            st.text(max_size=5),
            st.lists(st.integers(-3, 3), max_size=2),
            st.just("TABLE"),
        )
    )
    if v == "TABLE":
        other = draw(st.sampled_from(["tiny.onnx", "other.onnx", "x"]))
        return f'{{ "{other}" = {toml_value(draw)} }}'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    return json.dumps(v)


@st.composite
def budget_text(draw) -> bytes:
    from fsanet.benchmarks.budget import LIMITS

    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.one_of(st.sampled_from(["all", "tiny.onnx", "other.onnx"]), st.text(max_size=4)))
        lines.append(f"[{json.dumps(section)}]")
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.one_of(st.sampled_from(sorted(LIMITS)), st.from_regex(r"[a-z_]{1,8}", fullmatch=True)))
            lines.append(f"{key} = {toml_value(draw)}")
    if draw(st.booleans()):
        lines.insert(0, f"top = {toml_value(draw)}")
    return "\n".join(lines).encode()


@st.composite
def npz_bytes(draw, calib: bool = False) -> bytes:
    """Random bytes, or an .npz whose fields have random names, shapes, dtypes and values."""
    import io

    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=400))
    n = draw(st.integers(0, 3))
    image_shape = draw(st.sampled_from([(n, 64, 64, 3), (n, 64, 64), (n, 3, 64, 64), (64, 64, 3), (n,), ()]))
    dtype = draw(st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "<U2"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):
        image = rng.uniform(0, 255, image_shape)
        if image.size and draw(st.booleans()):
            image.flat[draw(st.integers(0, image.size - 1))] = draw(SPECIAL_FLOATS)
        image = image.astype(dtype)
    pose = rng.uniform(-120, 120, draw(st.sampled_from([(n, 3), (n, 2), (n,), (n + 1, 3)])))
    if pose.size and draw(st.booleans()):
        pose.flat[draw(st.integers(0, pose.size - 1))] = draw(SPECIAL_FLOATS)
    fields = {"crops" if calib else "image": image, "pose" if not calib else "poses": pose}
    if calib:
        manifest = draw(
            st.one_of(
                st.text(max_size=20),
                st.sampled_from(["null", "[]", "1", '{"format": "fsanet-calibration"}']),
                st.text(max_size=8).map(lambda s: json.dumps({"format": "fsanet-calibration", "sha256": s})),
            )
        )
        fields["manifest"] = np.array(manifest)
    drop = draw(st.sets(st.sampled_from(sorted(fields)), max_size=len(fields)))
    fields = {k: v for k, v in fields.items() if k not in drop}
    if draw(st.booleans()):
        fields[draw(st.from_regex(r"[a-z]{1,6}", fullmatch=True))] = rng.normal(size=draw(st.integers(0, 4)))
    buf = io.BytesIO()
    np.savez(buf, **fields)
    return buf.getvalue()


@st.composite
def pts_text(draw) -> str:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(max_size=200))
    count = draw(st.sampled_from([0, 1, 2, 5, 68]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = draw(st.sampled_from([(20.0, 180.0), (-500.0, -1.0), (180.0, 5000.0), (100.0, 100.0), (0.0, 1e9)]))
    pts = rng.uniform(lo, hi, (count, 2))
    for _ in range(draw(st.integers(0, 2)) if count else 0):
        pts.flat[draw(st.integers(0, pts.size - 1))] = draw(SPECIAL_FLOATS)
    body = "".join(f"{x!r} {y!r}\n" for x, y in pts)
    return f"version: 1\nn_points: {count}\n{{\n{body}}}\n" if draw(st.booleans()) else body


@st.composite
def image_bytes(draw) -> bytes:
    import cv2

    if draw(st.integers(0, 2)) == 0:
        return draw(st.binary(max_size=300))
    h, w = draw(st.integers(1, 240)), draw(st.integers(1, 240))
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (h, w, 3), np.uint8)
    return cv2.imencode(".jpg", noise)[1].tobytes()


@st.composite
def crop_arrays(draw, layout: str = "nhwc"):
    """Arrays near the crop (N, 64, 64, 3) or input (N, 3, 64, 64) shape: random dtype, values
    0..255 with a few special ones (NaN, inf, 1e30, -1000, 255.5...)."""
    n = draw(st.integers(0, 3))
    good = (n, 64, 64, 3) if layout == "nhwc" else (n, 3, 64, 64)
    shape = draw(
        st.one_of(
            st.just(good),
            st.just(good[1:]),
            st.sampled_from([(n, 64, 64, 4), (n, 63, 64, 3), (n, 3, 64, 64), (n, 64, 64, 3), (n, 64, 64), (1, 1)]),
            st.lists(st.integers(0, 4), max_size=5).map(tuple),
        )
    )
    dtype = np.dtype(
        draw(
            st.sampled_from(["uint8", "float32", "float64", "float16", "int16", "int64", "uint16", "bool", "complex64"])
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):
        a = rng.uniform(0, 255, shape) if draw(st.integers(0, 3)) else np.full(shape, draw(SPECIAL_FLOATS))
        for _ in range(draw(st.integers(0, 3)) if a.size else 0):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(SPECIAL_FLOATS)
        return a.astype(dtype)


def crops_verdict(a: np.ndarray) -> str:
    """'ok' (must be accepted), 'bad' (must be refused with an FsanetError) or 'either'."""
    verdict = "ok"
    if a.ndim == 4 and a.shape[1:] == (64, 64, 3):
        verdict = "ok" if len(a) else "either"
    elif a.shape == (64, 64, 3):
        verdict = "either"
    else:
        return "bad"
    if a.dtype.kind == "c":
        return "bad"
    if a.dtype.kind in "iub" and a.dtype != np.uint8:
        verdict = "either"
    with np.errstate(all="ignore"):
        v = a.astype(np.float64)
    if v.size and (not np.isfinite(v).all() or v.min() < 0 or v.max() > 255):
        return "bad"
    if v.size and a.dtype.kind == "f" and 0 < v.max() <= 1:
        return "bad"  # floats scaled to 0..1 are refused, naming 0..255 (an all-zero batch is either)
    return verdict


def assert_angles(y, n: int) -> None:
    y = np.asarray(y)
    assert y.shape == (n, 3), f"angles of shape {y.shape}, expected ({n}, 3)"
    assert np.isfinite(y).all(), f"non-finite angles returned silently: {y[~np.isfinite(y).all(1)][:2]}"


def expect_fsanet_error(fn, *args, **kwargs):
    """Call fn; return its result, or None when it raised an FsanetError; fail on anything else."""
    try:
        return fn(*args, **kwargs)
    except FsanetError as e:
        note(f"{type(e).__name__}: {first_line(e)}")
        return None
    except Exception as e:
        raise AssertionError(f"{type(e).__name__} instead of an FsanetError: {first_line(e)}") from e


# -- the command line: random files ----------------------------------------------------------------


@CONTRACT
@given(
    data=st.data(), suffix=st.sampled_from([".onnx", ".pt", ".tflite"]), command=st.sampled_from(["predict", "bench"])
)
def test_random_model_file(assets, capsys, data, suffix, command):
    work = assets.workdir()
    raw = data.draw(
        st.one_of(st.binary(max_size=600), mutated(assets.model.read_bytes()))
        if suffix == ".onnx"
        else st.one_of(st.binary(max_size=600), st.binary(max_size=64).map(lambda b: b[:4] + b"TFL3" + b[4:]))
    )
    model = work / f"garbage-model{suffix}"
    model.write_bytes(raw)
    spec = f"{model}@nchw,bgr,raw" if data.draw(st.booleans()) else str(model)
    out = work / "report"
    if command == "predict":
        argv = ["predict", spec, assets.faces / "face0.jpg"]
    else:
        argv = ["bench", spec, "--faces", assets.faces, *CHEAP_BENCH, "-o", out]
    code, _, _ = run_cli(capsys, Case(argv, [model.name], [model, assets.faces], [out]))
    if code == 0:  # only a file the runtime can load (a mutation in a name, say) may succeed
        from fsanet import runtimes

        with expect_fsanet_error(runtimes.open, spec) or pytest.fail(f"exit 0 for {spec}, which does not load"):
            pass


@FEW
@given(raw=budget_text())
def test_random_budget_file(assets, capsys, raw):
    work = assets.workdir()
    budget = work / "budget.toml"
    budget.write_bytes(raw)
    out = work / "report"
    argv = ["bench", assets.spec, "--faces", assets.faces, *CHEAP_BENCH, "--budget", budget, "-o", out]
    run_cli(capsys, Case(argv, [budget.name], [budget, assets.model, assets.faces], [out], budget=True))


@CONTRACT
@given(data=st.data(), command=st.sampled_from(["calib", "bench"]))
def test_random_data_npz(assets, capsys, data, command):
    work = assets.workdir()
    npz = work / "faces-set.npz"
    npz.write_bytes(data.draw(npz_bytes()))
    if command == "calib":
        out = work / "out" / "calib.npz"
        argv = ["calib", "build", npz, "-n", data.draw(st.integers(1, 3)), "-o", out]
    else:
        out = work / "report"
        argv = ["bench", assets.spec, "--data", npz, *CHEAP_BENCH, "-o", out]
    run_cli(capsys, Case(argv, [npz.name], [npz, assets.model], [out]))


@FEW
@given(raw=npz_bytes(calib=True))
def test_random_calibration_npz(assets, capsys, raw):
    work = assets.workdir()
    calib = work / "calib-set.npz"
    calib.write_bytes(raw)
    out = work / "export"
    argv = ["export", DEFAULT_CHECKPOINT, "--to", "onnx-int8", "--calib", calib, "-o", out]
    code, _, _ = run_cli(capsys, Case(argv, [calib.name], [calib, DEFAULT_CHECKPOINT], [out]))
    assert code == 2, "a calibration set not built by `fsanet calib build` must be refused"


@CONTRACT
@given(image=image_bytes(), pts=pts_text(), command=st.sampled_from(["predict-image", "predict-dir", "bench", "calib"]))
def test_random_photo_and_landmarks(assets, capsys, image, pts, command):
    work = assets.workdir()
    folder = work / "photos"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(image)
    (folder / "photo.pts").write_text(pts)
    out = work / ("report" if command == "bench" else "calib.npz")
    argv = {
        "predict-image": ["predict", assets.spec, folder / "photo.jpg", "--json"],
        "predict-dir": ["predict", assets.spec, folder, "--json"],
        "bench": ["bench", assets.spec, "--faces", folder, *CHEAP_BENCH, "-o", out],
        "calib": ["calib", "build", folder, "-n", "1", "-o", out],
    }[command]
    code, stdout, _ = run_cli(
        capsys, Case(argv, ["photo.jpg", "photo.pts", folder.name], [folder, assets.model], [out])
    )
    if code == 0 and command.startswith("predict"):
        for row in map(json.loads, filter(lambda ln: ln.startswith("{"), stdout.splitlines())):
            if row["face"] is not None:
                assert all(map(math.isfinite, row["angles"])), f"non-finite angles printed: {row}"


# -- the command line: random option values --------------------------------------------------------


@st.composite
def bench_option(draw) -> tuple[str, str, str]:
    """(option, value, expectation) for one numeric option of `bench`."""
    option = draw(st.sampled_from(["--runs", "--warmup", "--threads", "--batch"]))
    if option == "--batch":
        return (option, *draw(batch_option()))
    value, expect = draw(int_option(huge=option == "--threads"))
    if option == "--warmup" and value == "0":
        expect = "ok"
    if option == "--threads" and value == "0":
        expect = "either"  # 0: the backend's default
    return option, value, expect


@CONTRACT
@given(case=bench_option())
@example(case=("--threads", "8589934592", "either"))
def test_bench_numeric_options(assets, capsys, case):
    option, value, expect = case
    out = assets.workdir() / "report"
    base = {"--runs": "2", "--warmup": "0", "--threads": "1", "--batch": "1"} | {option: value}
    argv = ["bench", assets.spec, "--faces", assets.faces, "--no-memory", *(f"{k}={v}" for k, v in base.items())]
    code, _, _ = run_cli(capsys, Case([*argv, "-o", out], [option], [assets.model, assets.faces], [out]))
    if expect != "either":
        assert code == (0 if expect == "ok" else 2), f"{option}={value!r}: exit {code}, expected {expect}"


@CONTRACT
@given(count=int_option(max_valid=3))
def test_calib_count_option(assets, capsys, count):
    value, expect = count
    out = assets.workdir() / "calib.npz"
    argv = ["calib", "build", assets.faces, f"--count={value}", "-o", out]
    code, _, _ = run_cli(capsys, Case(argv, ["-n", "--count"], [assets.faces], [out]))
    if expect != "either":
        assert code == (0 if expect == "ok" else 2), f"-n {value!r}: exit {code}, expected {expect}"


@CONTRACT
@given(threads=int_option(huge=True))
def test_predict_threads_option(assets, capsys, threads):
    value, expect = threads
    expect = "either" if value == "0" else expect
    argv = ["predict", assets.spec, assets.faces, f"--threads={value}", "--json"]
    code, _, _ = run_cli(capsys, Case(argv, ["--threads"], [assets.model, assets.faces]))
    if expect != "either":
        assert code == (0 if expect == "ok" else 2), f"--threads {value!r}: exit {code}, expected {expect}"


@MANY
@given(
    mean=st.one_of(FLOAT_TEXT, GARBAGE, st.sampled_from(["127.5", "0", "1e-300", "-1e308"])),
    std=st.one_of(FLOAT_TEXT, GARBAGE, st.sampled_from(["128", "0", "1e-300", "-0.0", "1e308"])),
    layout=st.sampled_from(["nchw,bgr", "nhwc,rgb", "nchw,rgb,raw", ""]),
)
def test_input_format_spec(assets, capsys, mean, std, layout):
    spec = ",".join(filter(None, [layout, f"mean={mean}", f"std={std}"]))
    argv = ["predict", f"{assets.model}@{spec}", assets.faces / "face0.jpg", "--json"]
    code, stdout, _ = run_cli(capsys, Case(argv, [assets.model.name, "mean", "std", "input format"], [assets.model]))
    if code == 0:
        for row in map(json.loads, filter(lambda ln: ln.startswith("{"), stdout.splitlines())):
            assert all(map(math.isfinite, row["angles"])), f"@{spec}: non-finite angles printed as a result: {row}"


# -- the Python API ------------------------------------------------------------------------------


@MANY
@given(crops=crop_arrays())
@example(crops=np.full((1, 64, 64, 3), 1e30))
@example(crops=np.full((2, 64, 64, 3), -1000.0, np.float32))
def test_runtime_predict_arrays(runtime, crops):
    verdict = crops_verdict(crops)
    note(f"crops {crops.shape} {crops.dtype}, verdict {verdict}")
    y = expect_fsanet_error(runtime.predict, crops)
    if verdict == "ok":
        assert y is not None, "valid crops were refused"
    if verdict == "bad":
        assert y is None, f"returned {np.asarray(y).shape} angles for crops it must refuse"
    if y is not None:
        assert_angles(y, len(crops) if crops.ndim == 4 else 1)


@MANY
@given(x=crop_arrays(layout="nchw"))
def test_runtime_infer_arrays(runtime, x):
    note(f"x {x.shape} {x.dtype}")
    y = expect_fsanet_error(runtime.infer, x)
    with np.errstate(all="ignore"):
        finite = x.dtype.kind != "c" and np.isfinite(x.astype(np.float64)).all()
    if x.ndim != 4 or x.shape[1:] != (3, 64, 64) or not finite:
        assert y is None, f"infer returned {np.asarray(y).shape} for an input it must refuse"
    if y is not None:  # the raw model output: non-finite values are the caller's to check
        assert np.shape(y) == (len(x), 3), f"infer returned shape {np.shape(y)}"


@st.composite
def valid_crops(draw) -> np.ndarray:
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.uniform(0, 255, (n, 64, 64, 3)).astype(draw(st.sampled_from(["uint8", "float32", "float64"])))


@CONTRACT
@given(crops=valid_crops(), via=st.sampled_from(["runtime", "estimator", "cli"]))
def test_non_finite_angles_never_pass_silently(assets, capsys, crops, via):
    """A model that gives NaN/-inf angles: every API refuses them with an FsanetError, `predict` exits 2."""
    from fsanet.runtimes.estimator import PoseEstimator

    from fsanet import runtimes

    spec = f"{assets.nan_model}@nchw,bgr,raw"
    if via == "cli":
        argv = ["predict", spec, assets.faces, "--json"]
        code, stdout, _ = run_cli(capsys, Case(argv, [assets.nan_model.name], [assets.nan_model, assets.faces]))
        assert code == 2, f"exit {code} for a model whose angles are all NaN or infinite; stdout {stdout[:200]!r}"
        return
    with runtimes.open(spec) as rt:
        if via == "runtime":  # the backend's raw output, by design: bench counts such faces for its budget
            y = expect_fsanet_error(rt.predict, crops)
            assert y is None or not np.isfinite(y).all()
            return
        y = expect_fsanet_error(PoseEstimator(rt, batch=2).predict, crops)
    assert y is None, f"{via}.predict returned non-finite angles silently: {np.asarray(y)[:1]}"


@MANY
@given(
    batch=st.one_of(
        st.integers(-3, 5), st.integers(10**18, 10**30), st.floats(), st.text(max_size=3), st.none(), st.booleans()
    ),
    n=st.integers(1, 5),
)
def test_estimator_batch(runtime, batch, n):
    from fsanet.runtimes.estimator import PoseEstimator

    crops = np.random.default_rng(n).integers(0, 256, (n, 64, 64, 3), np.uint8)

    def run():
        return PoseEstimator(runtime, batch=batch).predict(crops)

    y = expect_fsanet_error(run)
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        assert y is not None, f"batch={batch!r} was refused"
    if y is not None:
        assert_angles(y, n)


@st.composite
def angle_arrays(draw):
    kind = draw(st.sampled_from(["array", "array", "array", "other"]))
    if kind == "other":
        return draw(
            st.one_of(
                st.none(),
                st.text(max_size=4),
                st.lists(st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=4), max_size=3),
            )
        )
    shape = draw(st.one_of(st.tuples(st.integers(0, 4), st.sampled_from([3, 3, 2, 4])), st.just((3,)), st.just(())))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.uniform(-100, 100, shape)
    for _ in range(draw(st.integers(0, 2)) if a.size else 0):
        a.flat[draw(st.integers(0, a.size - 1))] = draw(SPECIAL_FLOATS)
    return a.astype(draw(st.sampled_from(["float64", "float32", "int64", "complex128"])))


@MANY
@given(pred=angle_arrays(), target=angle_arrays(), fn=st.sampled_from(["mae", "drift"]))
@example(pred=None, target="", fn="mae")
def test_accuracy_metrics(pred, target, fn):
    from fsanet import accuracy

    result = expect_fsanet_error(getattr(accuracy, fn), pred, target)
    sane = (
        all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in (pred, target))
        and pred.shape == target.shape
        and pred.ndim == 2
        and pred.shape[0] >= 1
        and pred.shape[1] == 3
        and all(np.isfinite(a).all() and np.abs(a).max() <= 1e6 for a in (pred, target))
    )
    if sane:
        assert result is not None, "valid (N, 3) angles were refused"
        bad = {k: v for k, v in result.items() if not math.isfinite(v)}
        assert not bad, f"{fn} of finite angles gave non-finite values: {bad}"
    # NaN angles in give NaN means out, by design: the benchmark counts such faces and the budget fails


@MANY
@given(raw=budget_text(), where=st.sampled_from(["file", "file", "missing", "folder"]))
def test_load_budget(assets, raw, where):
    from fsanet.benchmarks.budget import load_budget

    work = assets.workdir()
    path = work / "budget.toml"
    if where == "file":
        path.write_bytes(raw)
    elif where == "folder":
        path.mkdir()
    budget = expect_fsanet_error(load_budget, path)
    if where != "file":
        assert budget is None, f"load_budget accepted a {where} path"
    if budget is not None:
        values = [
            x
            for limits in budget.values()
            for v in limits.values()
            for x in (v.values() if isinstance(v, dict) else [v])
        ]
        assert not any(math.isnan(x) for x in values), f"a NaN limit was accepted (every check would pass): {budget}"


@MANY
@given(
    spec=st.one_of(
        st.text(max_size=30),
        st.lists(
            st.sampled_from(["nchw", "nhwc", "bgr", "rgb", "raw", "mean=", "std=", "=", "size=3"]), max_size=4
        ).map(",".join),
        st.tuples(st.sampled_from(["mean", "std", "MEAN"]), st.one_of(FLOAT_TEXT, GARBAGE)).map("=".join),
        st.sampled_from([None, 1, 1.5, b"nchw", ["nchw"]]),
    )
)
def test_input_format_parse(runtime, spec):
    from fsanet.runtimes import InputFormat

    fmt = expect_fsanet_error(InputFormat.parse, spec)
    if fmt is not None:
        assert isinstance(fmt, InputFormat)
        crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
        x = expect_fsanet_error(fmt.prepare, crops)  # then the model: refused, or finite angles
        if x is not None and x.shape[1:] == runtime.expected_shape(1)[1:]:
            y = expect_fsanet_error(runtime.infer, x)
            if y is not None:
                assert_angles(y, 2)


@MANY
@given(data=st.data(), kind=st.sampled_from(["npz", "photos", "missing", "other-file", "synthetic"]))
def test_open_faces(assets, data, kind):
    from fsanet.data import open_faces

    work = assets.workdir()
    if kind == "npz":
        path = work / "set.npz"
        path.write_bytes(data.draw(npz_bytes()))
    elif kind == "photos":
        path = work / "photos"
        path.mkdir()
        for i in range(data.draw(st.integers(1, 2))):
            (path / f"p{i}.jpg").write_bytes(data.draw(image_bytes()))
            (path / f"p{i}.pts").write_text(data.draw(pts_text()))
    elif kind == "other-file":
        path = work / data.draw(st.sampled_from(["set.txt", "set.npy", "set.jpg", "set"]))
        path.write_bytes(data.draw(st.binary(max_size=100)))
    elif kind == "synthetic":
        # never an empty count: that is the default 2,000 heads, too slow to render here
        count = st.one_of(GARBAGE.filter(lambda s: s[:1] not in ("", ":")), st.integers(-3, 2).map(str))
        path = "synthetic:" + data.draw(st.one_of(count, st.just("1:x")))
    else:
        path = work / "nothing-here"
    note(f"open_faces({path!r})")
    faces = expect_fsanet_error(open_faces, path)
    if faces is not None:
        images = expect_fsanet_error(faces.images)
        if images is not None:
            assert images.dtype == np.uint8 and images.shape == (len(faces), 64, 64, 3), (images.dtype, images.shape)
        if faces.poses is not None:
            assert np.isfinite(faces.poses).all(), "non-finite pose labels kept"


@MANY
@given(crops=crop_arrays())
def test_check_crops(crops):
    from fsanet.preprocess import check_crops

    verdict = crops_verdict(crops)
    a = expect_fsanet_error(check_crops, crops)
    if verdict == "ok":
        assert a is not None, "valid crops were refused"
    if verdict == "bad":
        assert a is None, f"check_crops accepted {crops.shape} {crops.dtype} crops it must refuse"


@st.composite
def landmark_arrays(draw):
    shape = draw(st.sampled_from([(68, 2), (2, 21), (5, 2), (2, 2), (1, 2), (0, 2), (3, 3), (68,), (2, 5, 2)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = draw(st.sampled_from([(10.0, 40.0), (-50.0, -1.0), (60.0, 500.0), (20.0, 20.0), (0.0, 1e12)]))
    a = rng.uniform(lo, hi, shape)
    for _ in range(draw(st.integers(0, 2)) if a.size else 0):
        a.flat[draw(st.integers(0, a.size - 1))] = draw(SPECIAL_FLOATS)
    return a


@MANY
@given(
    landmarks=landmark_arrays(),
    image_shape=st.sampled_from([(50, 50, 3), (50, 50), (1, 1, 3), (0, 0, 3), (50, 50, 4), (64, 64, 3)]),
    fn=st.sampled_from(["landmark_box", "official_crop"]),
)
def test_landmarks_and_crop(landmarks, image_shape, fn):
    from fsanet import preprocess

    if fn == "landmark_box":
        box = expect_fsanet_error(preprocess.landmark_box, landmarks)
        if box is not None:
            assert len(box) == 4 and all(map(math.isfinite, box)), f"landmark_box returned {box}"
        return
    image = np.random.default_rng(1).integers(0, 256, image_shape, np.uint8)
    crop = expect_fsanet_error(preprocess.official_crop, image, landmarks)
    if crop is not None:
        assert crop.shape[:2] == (64, 64), f"official_crop returned shape {crop.shape}"
        if image.ndim == 3 and image.shape[2] == 3:
            assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8, f"a {crop.shape} {crop.dtype} crop"


@MANY
@given(
    raw=st.binary(max_size=300),
    suffix=st.sampled_from([".onnx", ".pt", ".tflite", ".engine", ".plan", ".txt", ""]),
    spec=st.one_of(st.none(), st.sampled_from(["nchw,bgr,raw", "nhwc", ""]), st.text(max_size=12)),
)
def test_runtimes_open_random_file(assets, raw, suffix, spec):
    from fsanet import runtimes

    path = assets.workdir() / f"model{suffix}"
    path.write_bytes(raw)
    rt = expect_fsanet_error(runtimes.open, str(path) if spec is None else f"{path}@{spec}")
    assert rt is None, "random bytes opened as a model"


# -- documented upper bounds: hostile sizes are bad input, refused before any work -------------------


def bounded_argv(assets, work: Path, command: str, value: str) -> tuple[list, list[str]]:
    """(argv, names the error may cite) of one command given `value` where a size goes."""
    from fsanet.limits import MAX_BATCH, MAX_FACES

    spec, faces, model = assets.spec, assets.faces, assets.model
    return {
        "calib -n": (["calib", "build", faces, "-n", value, "-o", work / "c.npz"], ["--count", f"{MAX_FACES:,}"]),
        "calib synthetic:N": (["calib", "build", f"synthetic:{value}", "-o", work / "c.npz"], [f"{MAX_FACES:,}"]),
        "synth -n": (["synth", "-n", value, "-o", work / "s.npz"], ["--count", f"{MAX_FACES:,}"]),
        "bundle --count": (["bundle", spec, "--count", value, "-o", work / "kit"], ["--count", f"{MAX_FACES:,}"]),
        "debug --faces": (
            ["debug", model, "--reference", model, "--faces", f"synthetic:{value}", "-o", work / "d"],
            [f"{MAX_FACES:,}", model.name],
        ),
        "bench --batch": (
            ["bench", spec, "--faces", faces, "--batch", f"1,{value}", "-o", work / "r"],
            ["--batch", f"{MAX_BATCH:,}"],
        ),
        "profile --batch": (["profile", spec, "--faces", faces, "--batch", value, "-o", work / "p"], ["--batch"]),
    }[command]


@CONTRACT
@given(
    command=st.sampled_from(
        [
            "calib -n",
            "calib synthetic:N",
            "synth -n",
            "bundle --count",
            "debug --faces",
            "bench --batch",
            "profile --batch",
        ]
    ),
    value=st.one_of(st.integers(1_000_001, 10**12), st.integers(10**12, 10**400)),
)
def test_hostile_sizes_are_bad_input(assets, capsys, command, value):
    work = assets.workdir()
    argv, names = bounded_argv(assets, work, command, str(value))
    code, _, err = run_cli(capsys, Case(argv, names, [assets.model, assets.faces], [argv[-1]]))
    assert code == 2, f"{command} {value}: exit {code}, expected 2 (a documented upper bound)"


def forged_npz(fields: dict, claimed: int) -> bytes:
    """An .npz whose first field's header claims `claimed` rows while holding a few bytes."""
    import io
    import zipfile

    from numpy.lib import format as npy

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (name, a) in enumerate(fields.items()):
            member = io.BytesIO()
            shape = (claimed, *a.shape[1:]) if i == 0 else a.shape
            npy.write_array_header_1_0(
                member, {"descr": npy.dtype_to_descr(a.dtype), "fortran_order": False, "shape": shape}
            )
            member.write(a.tobytes())
            z.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


@FEW
@given(claimed=st.integers(10**6, 10**15), command=st.sampled_from(["data", "calib"]))
def test_npz_claiming_a_billion_faces(assets, capsys, claimed, command):
    work = assets.workdir()
    crops = np.zeros((2, 64, 64, 3), np.uint8)
    path = work / "claims.npz"
    if command == "data":
        path.write_bytes(forged_npz({"image": crops, "pose": np.zeros((2, 3), np.float32)}, claimed))
        argv = ["bench", assets.spec, "--data", path, *CHEAP_BENCH, "-o", work / "r"]
    else:
        manifest = np.array(json.dumps({"format": "fsanet-calibration", "sha256": "0" * 64}))
        path.write_bytes(forged_npz({"crops": crops, "manifest": manifest}, claimed))
        argv = ["export", DEFAULT_CHECKPOINT, "--to", "onnx-int8", "--calib", path, "-o", work / "e"]
    code, _, _ = run_cli(capsys, Case(argv, [path.name], [path], [argv[-1]]))
    assert code == 2
