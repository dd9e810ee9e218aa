"""Issue 28, the input files: image bombs refused from their header, detector files and demo
outputs checked first, JPEGs cut short (even with an end marker appended), FIFOs, empty and
0..1-scaled batches, and hostile face counts. Each case: exit 2, one line naming the file."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import cv2
import numpy as np
import pytest
from fsanet.runtimes.estimator import PoseEstimator

from fsanet import runtimes
from fsanet.cli import main
from fsanet.data import open_faces
from fsanet.data.base import pixel_limit, read_image
from fsanet.data.synthetic import synthetic_faces
from fsanet.errors import DataError
from fsanet.limits import MAX_FACES, MAX_PIXELS


def one_error(capsys, *names: str) -> str:
    """The one `fsanet CMD: error:` line on stderr, which must name every one of `names`."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fsanet ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "internal error" not in lines[0] and all(n in lines[0] for n in names), lines[0]
    return lines[0]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with a few bytes of pixel data: tiny on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes(image: np.ndarray, *flags: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, list(flags))
    assert ok
    return data.tobytes()


def noise(h: int = 120, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG from OpenCV with its frame header (FFC0/FFC2) saying width x height."""
    at = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def bmp_size(data: bytes, width: int, height: int) -> bytes:
    """A BMP (BITMAPINFOHEADER) saying width x height; a negative height: rows top-down."""
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


def webp_extended(width: int, height: int) -> bytes:
    """The start of an extended WebP (VP8X chunk) declaring a width x height canvas."""
    vp8x = b"\0" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8x)) + b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x


def cut_with_end_marker(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` of a JPEG with an end-of-image marker appended: today's decoders fill
    the rest with grey and only warn."""
    return data[: int(len(data) * keep)] + b"\xff\xd9"


# -- 8: image bombs, refused from the header before decoding ------------------------------------
@pytest.mark.parametrize(
    ("name", "make", "declared"),
    [
        ("bomb.png", lambda: png_header(65535, 65535), "65535 x 65535"),  # OpenCV asserted: exit 3
        ("big.png", lambda: png_header(30000, 30000), "30000 x 30000"),  # decoded: 2.7 GB
        ("big.jpg", lambda: with_size(jpeg_bytes(noise(16, 16)), 60000, 50000), "60000 x 50000"),
        ("big.webp", lambda: webp_extended(40000, 30000), "40000 x 30000"),
        ("big.bmp", lambda: bmp_size(cv2.imencode(".bmp", noise(8, 8))[1].tobytes(), 20000, -20000), "20000 x 20000"),
    ],
)
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(
    tiny_models, tmp_path, capsys, name, make, declared
):
    f = tmp_path / name
    f.write_bytes(make())
    assert f.stat().st_size < 5000
    start = time.perf_counter()
    assert main(["predict", tiny_models["mean"], str(f)]) == 2
    assert time.perf_counter() - start < 5  # nothing was decoded
    line = one_error(capsys, name, declared, f"{MAX_PIXELS:,}", "--max-pixels")
    assert "pixels" in line


def test_max_pixels_raises_or_lowers_the_limit(tiny_models, tmp_path, capsys):
    f = tmp_path / "photo.jpg"
    f.write_bytes(jpeg_bytes(noise(120, 100)))
    assert main(["predict", tiny_models["mean"], str(f), "--max-pixels", "11999"]) == 2
    one_error(capsys, "photo.jpg", "100 x 120", "12,000", "11,999")
    assert main(["predict", tiny_models["mean"], str(f), "--max-pixels", "12000"]) == 0
    assert main(["predict", tiny_models["mean"], str(f), "--max-pixels", "0"]) == 2  # argparse: out of range
    # the Python API: a parameter, or a bound for a block of work (any reader, any command)
    with pytest.raises(DataError, match="12,000 pixels"):
        read_image(f, max_pixels=11999)
    with pixel_limit(100), pytest.raises(DataError, match="limit of 100"):
        read_image(f)
    assert read_image(f).shape == (120, 100, 3)  # the block's bound is gone after it


def test_a_thumbnail_inside_exif_is_not_taken_for_the_image(tmp_path):
    """Segments are skipped by their length: a thumbnail's frame header inside APP1 is not read."""
    image = noise(80, 90)
    data = jpeg_bytes(image)
    thumbnail = with_size(jpeg_bytes(noise(16, 16)), 65000, 65000)
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 8) + b"Exif\0\0" + thumbnail
    f = tmp_path / "exif.jpg"
    f.write_bytes(data[:2] + app1 + data[2:])
    assert np.array_equal(read_image(f), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("quality", [80, 101])  # lossy (VP8), lossless (VP8L)
def test_webp_size_is_read_from_its_header(tmp_path, quality):
    f = tmp_path / "x.webp"
    f.write_bytes(cv2.imencode(".webp", noise(37, 53), [cv2.IMWRITE_WEBP_QUALITY, quality])[1].tobytes())
    assert np.array_equal(read_image(f), cv2.imread(str(f)))
    with pytest.raises(DataError, match="53 x 37 = 1,961 pixels"):
        read_image(f, max_pixels=1960)


def test_other_formats_are_refused_by_content(tmp_path):
    f = tmp_path / "x.jpg"
    f.write_bytes(cv2.imencode(".tif", noise())[1].tobytes())  # a TIFF named .jpg
    with pytest.raises(DataError, match=r"x\.jpg: cannot read the image: not a JPEG, PNG, BMP or WebP"):
        read_image(f)


# -- 8: detector files and demo outputs, checked up front ---------------------------------------
def test_a_detector_file_opencv_cannot_load_exits_2(tiny_models, noise_faces, tmp_path, capsys):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    photo = str(noise_faces / "face0.jpg")
    rel = os.path.relpath(passwd)
    assert main(["predict", tiny_models["mean"], photo, "--detector", f"haar:{rel}"]) == 2
    one_error(capsys, rel, "cascade")
    xml = tmp_path / "other.xml"
    xml.write_text('<?xml version="1.0"?><opencv_storage><x>1</x></opencv_storage>\n')
    assert main(["predict", tiny_models["mean"], photo, "--detector", f"lbp:{xml}"]) == 2
    one_error(capsys, "other.xml", "cascade")
    # an ONNX model that OpenCV loads but that is not YuNet: it failed at the first frame (exit 3)
    onnx = tiny_models["mean"].split("@")[0]
    assert main(["predict", tiny_models["mean"], photo, "--detector", f"yunet:{onnx}"]) == 2
    one_error(capsys, "mean.onnx", "YuNet")
    assert main(["predict", tiny_models["mean"], photo, "--detector", f"haar:{tmp_path}"]) == 2
    one_error(capsys, str(tmp_path), "a folder")


@pytest.mark.parametrize(
    ("source", "output", "allowed"), [("photo.jpg", "out.xyz", ".png"), ("clip.mp4", "out.png", ".mp4")]
)
def test_demo_output_suffix_is_checked_first(tiny_models, tmp_path, capsys, source, output, allowed):
    (tmp_path / "photo.jpg").write_bytes(jpeg_bytes(noise()))
    (tmp_path / "clip.mp4").write_bytes(b"not read: the output is refused first")
    out = tmp_path / output
    assert main(["demo", str(tmp_path / source), "-m", tiny_models["mean"], "-o", str(out)]) == 2
    one_error(capsys, f"-o {out}", allowed)
    assert not out.exists()


# -- 10: a JPEG cut short, with an end marker appended -------------------------------------------
def test_a_cut_jpeg_with_an_end_marker_is_refused(tiny_models, make_faces, tmp_path, capsys):
    faces = make_faces(tmp_path / "f", count=2)
    data = (faces / "face0.jpg").read_bytes()
    (faces / "face0.jpg").write_bytes(cut_with_end_marker(data))
    assert main(["predict", tiny_models["mean"], str(faces / "face0.jpg")]) == 2
    one_error(capsys, "face0.jpg", "truncated")
    # calibration drops it as unreadable, and says so when it then falls short
    assert main(["calib", "build", str(faces), "-n", "2", "-o", str(tmp_path / "c.npz")]) == 2
    one_error(capsys, str(faces))
    assert not (tmp_path / "c.npz").exists()


def test_debug_refuses_a_cut_jpeg(tiny_models, make_faces, tmp_path, capsys):
    faces = make_faces(tmp_path / "f", count=1)
    (faces / "face0.jpg").write_bytes(cut_with_end_marker((faces / "face0.jpg").read_bytes()))
    onnx = tiny_models["mean"].split("@")[0]
    assert main(["debug", onnx, "--reference", onnx, "--faces", str(faces), "-o", str(tmp_path / "d")]) == 2
    one_error(capsys, "face0.jpg", "truncated")


@pytest.fixture(scope="module")
def photo(shared_data) -> bytes:
    return (shared_data / "aflw2000-sample" / "image00251.jpg").read_bytes()


@pytest.mark.parametrize("flags", [(), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 4)])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9, 0.99])
def test_real_photos_cut_with_an_end_marker(photo, tmp_path, flags, keep):
    """Baseline as shipped, progressive and with restart markers (re-encoded by OpenCV)."""
    data = photo if not flags else jpeg_bytes(cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR), *flags)
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(data)
    cut.write_bytes(cut_with_end_marker(data, keep))
    assert np.array_equal(read_image(whole), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    with pytest.raises(DataError, match=r"cut\.jpg: the image file is truncated"):
        read_image(cut)


def test_no_real_photo_is_refused(shared_data):
    """Every photo of the shared data (1,207 real faces, the AFLW2000 sample) reads as OpenCV reads it."""
    files = sorted((shared_data / "real-faces").rglob("*.jpg"))
    files += sorted((shared_data / "aflw2000-sample").glob("*.jpg"))
    assert len(files) >= 1207 + 16
    for f in files:
        image = read_image(f)
        assert image.ndim == 3 and image.shape[2] == 3, f
    for f in files[::100]:
        assert np.array_equal(read_image(f), cv2.imread(str(f))), f


# -- 14: FIFOs never block -----------------------------------------------------------------------
def test_fifos_named_as_inputs_are_refused_not_read(tiny_models, tmp_path):
    """A FIFO named x.jpg (named, or in a folder), x.mat in a faces folder or a cascade .xml:
    each command exits 2 naming it. Run in a child with a timeout: a regression blocks forever."""
    photos, faces = tmp_path / "photos", tmp_path / "faces"
    photos.mkdir()
    (photos / "ok.jpg").write_bytes(jpeg_bytes(noise()))
    os.mkfifo(photos / "x.jpg")
    faces.mkdir()
    (faces / "a.jpg").write_bytes(jpeg_bytes(noise()))
    os.mkfifo(faces / "a.mat")
    os.mkfifo(tmp_path / "cascade.xml")
    os.mkfifo(tmp_path / "clip.mp4")
    os.mkfifo(tmp_path / "set.npz")
    m = tiny_models["mean"]
    cases = [
        (["predict", m, str(photos / "x.jpg")], "x.jpg"),
        (["predict", m, str(photos)], "x.jpg"),
        (["demo", str(photos), "-m", m, "-o", str(tmp_path / "drawn") + "/"], "x.jpg"),
        (["demo", str(tmp_path / "clip.mp4"), "-m", m, "-o", str(tmp_path / "out.mp4")], "clip.mp4"),
        (["eval", m, "--data", str(faces)], "a.mat"),
        (["eval", m, "--data", str(tmp_path / "set.npz")], "set.npz"),
        (["predict", m, str(photos / "ok.jpg"), "--detector", f"haar:{tmp_path / 'cascade.xml'}"], "cascade.xml"),
    ]
    code = (
        "import json, sys\nfrom fsanet.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n    print(main(argv), flush=True)\n"
    )
    import json

    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.stdout.split() == ["2"] * len(cases), done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("fsanet ")]
    assert len(errors) == len(cases) and "Traceback" not in done.stderr, done.stderr
    for line, (_, name) in zip(errors, cases, strict=True):
        assert name in line and "not a regular file" in line, line
    assert not (tmp_path / "out.mp4").exists()


# -- 15: the Python API: empty batches, crops scaled to 0..1 -------------------------------------
@pytest.fixture
def mean_rt(tiny_models):
    with runtimes.open(tiny_models["mean"]) as rt:
        yield rt


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_an_empty_batch_gives_no_angles(mean_rt, dtype):
    empty = np.zeros((0, 64, 64, 3), dtype)
    for predict in (
        PoseEstimator(mean_rt).predict,
        PoseEstimator(mean_rt, check_finite=False).predict,
        mean_rt.predict,
    ):
        angles = predict(empty)
        assert angles.shape == (0, 3) and angles.dtype == np.float32


def test_no_crops_at_all_is_a_data_error(mean_rt):
    with pytest.raises(DataError, match=r"mean\.onnx: crops must be \(N, 64, 64, 3\)"):
        PoseEstimator(mean_rt).predict([])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_crops_scaled_to_one_are_refused(mean_rt, dtype):
    crops = np.random.default_rng(0).random((2, 64, 64, 3)).astype(dtype)
    for predict in (PoseEstimator(mean_rt).predict, mean_rt.predict):
        with pytest.raises(DataError, match=r"looks scaled to 0\.\.1; give BGR pixels 0\.\.255"):
            predict(crops)
    assert PoseEstimator(mean_rt).predict(crops * 255).shape == (2, 3)  # the same crops, 0..255
    assert mean_rt.predict(np.zeros((1, 64, 64, 3), dtype)).shape == (1, 3)  # all black: either scale


# -- 6: hostile face counts ----------------------------------------------------------------------
def test_synthetic_count_is_bounded(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["calib", "build", "synthetic:1000000000", "-o", str(tmp_path / "c.npz")]) == 2
    assert time.perf_counter() - start < 5
    one_error(capsys, "synthetic:1000000000", f"{MAX_FACES:,}")
    for spec in ("synthetic:1000001:3", f"synthetic:{10**400}"):
        with pytest.raises(DataError, match=f"{MAX_FACES:,}"):
            open_faces(spec)
    with pytest.raises(DataError, match=f"{MAX_FACES:,}"):
        synthetic_faces(MAX_FACES + 1)


def test_debug_faces_synthetic_is_bounded(tiny_models, tmp_path, capsys):
    onnx = tiny_models["mean"].split("@")[0]
    argv = ["debug", onnx, "--reference", onnx, "--faces", "synthetic:2000000", "-o", str(tmp_path / "d")]
    assert main(argv) == 2
    one_error(capsys, "synthetic:2000000", f"{MAX_FACES:,}")


def lying_npz(path, faces: int = 10**9):
    """An .npz of a few hundred bytes whose 'image' header claims `faces` 64x64 faces."""
    from numpy.lib import format as npy

    def member(shape, dtype, payload: bytes) -> bytes:
        buf = io.BytesIO()
        header = {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        npy.write_array_header_1_0(buf, header)
        return buf.getvalue() + payload

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image.npy", member((faces, 64, 64, 3), "uint8", bytes(64)))
        z.writestr("pose.npy", member((faces, 3), "float32", bytes(12)))
    return path


@pytest.mark.parametrize("command", ["eval", "calib"])
def test_an_npz_claiming_a_billion_faces_exits_2(tiny_models, tmp_path, capsys, command):
    f = lying_npz(tmp_path / "claims.npz")
    argv = {
        "eval": ["eval", tiny_models["mean"], "--data", str(f)],
        "calib": ["calib", "build", str(f), "-o", str(tmp_path / "c.npz")],
    }[command]
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 10
    one_error(capsys, "claims.npz", "'image'", "1000000000")
