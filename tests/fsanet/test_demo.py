"""`fsanet demo` on real photos: the drawn axes agree with the 68 landmarks, every edge case."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fsanet.cli import main
from fsanet.data.landmarks import read_pts
from fsanet.demo import PoseDemo, Summary, run_demo
from fsanet.detectors import open_detector
from fsanet.draw import AXIS_SCALE
from fsanet.preprocess import expand_box

LEFT_PROFILE = "afw/174692320_1"  # nose towards the image's left
RIGHT_PROFILE = "afw/14424972_1"  # nose towards the image's right
FRONTAL = "afw/1051618982_1"


@pytest.fixture(scope="module")
def faces_dir(shared_data) -> Path:
    return shared_data / "real-faces"


@pytest.fixture(scope="module")
def demo(fusion_checkpoint):
    """The fusion through the PyTorch runtime: any artifact works, and this one is quick to make."""
    from fsanet.runtimes.estimator import PoseEstimator

    from fsanet import runtimes

    with PoseEstimator(runtimes.open(fusion_checkpoint, threads=1)) as estimator:
        yield PoseDemo(estimator, open_detector("haar"))


def photo(faces_dir: Path, name: str) -> np.ndarray:
    return cv2.imread(str(faces_dir / f"{name}.jpg"))


def nose_offset(points: np.ndarray) -> float:
    """Where the nose tip (68-point index 30) sits between the jaw's ends (0 and 16), as a
    fraction of the face width: < 0 when the face turns towards the image's left."""
    width = points[:, 0].max() - points[:, 0].min()
    return (points[30, 0] - (points[0, 0] + points[16, 0]) / 2) / width


def colour_pixels(drawn: np.ndarray, original: np.ndarray, channel: int) -> np.ndarray:
    """(x, y) of pixels the drawing turned pure blue (channel 0) or pure red (channel 2)."""
    others = [c for c in range(3) if c != channel]
    pure = (drawn[..., channel] >= 200) & (drawn[..., others] <= 60).all(-1)
    changed = np.abs(drawn.astype(int) - original.astype(int)).sum(-1) > 60
    ys, xs = np.nonzero(pure & changed)
    return np.stack([xs, ys], 1)


def analyse(demo, image):
    return demo.frame(image, Summary(), show_fps=False)


def test_drawing_changes_the_photo_where_the_face_is(demo, faces_dir):
    image = photo(faces_dir, FRONTAL)
    drawn, boxes, angles = analyse(demo, image)
    assert len(boxes) == 1 and angles.shape == (1, 3)
    x0, y0, x1, y1 = boxes[0]
    changed = np.abs(drawn.astype(int) - image.astype(int)).sum(-1) > 30
    assert changed[y0 : y1 + 1, x0 : x1 + 1].sum() > 4 * (x1 - x0)  # box outline and three axes
    assert not changed[: y0 - 3, : x0 - 3].any()  # nothing drawn far from the face


def test_profile_yaw_agrees_with_the_landmarks(demo, faces_dir):
    """On the clearest profiles of real-faces (by the 68 landmarks), detector + model give the
    yaw sign the landmarks imply: positive when the nose points to the image's left."""
    offsets = {p: nose_offset(read_pts(p)) for p in sorted(faces_dir.rglob("*.pts"))}
    ranked = sorted(offsets, key=offsets.get)
    checked = {"left": [], "right": []}
    for side, pts_files in (("left", ranked[:10]), ("right", ranked[-10:])):
        for pts in pts_files:
            image = cv2.imread(str(pts.with_suffix(".jpg")))
            nose = read_pts(pts)[30]
            boxes, angles, _ = demo.analyse(image)
            hits = [
                a for b, a in zip(boxes, angles, strict=True) if b[0] <= nose[0] <= b[2] and b[1] <= nose[1] <= b[3]
            ]
            if hits:
                checked[side].append((pts.name, offsets[pts], float(hits[0][0])))
    assert len(checked["left"]) >= 6 and len(checked["right"]) >= 6, checked
    wrong = [c for c in checked["left"] + checked["right"] if np.sign(c[2]) != -np.sign(c[1])]
    assert not wrong, f"yaw sign disagrees with the landmarks: {wrong}"
    assert min(c[2] for c in checked["left"]) > 15 and max(c[2] for c in checked["right"]) < -15


@pytest.mark.parametrize("name, nose_side", [(LEFT_PROFILE, -1), (RIGHT_PROFILE, 1)])
def test_drawn_axes_point_the_way_the_face_looks(demo, faces_dir, name, nose_side):
    """The blue axis goes where the nose points; the red one stays to the right, shortened by
    cos(yaw) cos(roll): the projection of the paper's Fig. 1 axes under the model's angles."""
    image = photo(faces_dir, name)
    assert np.sign(nose_offset(read_pts(faces_dir / f"{name}.pts"))) == nose_side
    drawn, boxes, angles = analyse(demo, image)
    (x0, y0, x1, y1), (yaw, _, roll) = boxes[0], angles[0]
    cx, size = (x0 + x1) / 2, AXIS_SCALE * max(x1 - x0, y1 - y0)
    blue, red = colour_pixels(drawn, image, 0), colour_pixels(drawn, image, 2)
    assert len(blue) > size / 4 and len(red) > size / 4
    blue_reach = blue[:, 0].max() - cx if nose_side > 0 else blue[:, 0].min() - cx
    assert np.sign(blue_reach) == nose_side
    assert abs(abs(blue_reach) - size * abs(np.sin(np.radians(yaw)))) < 6
    assert abs(red[:, 0].max() - cx - size * np.cos(np.radians(yaw)) * np.cos(np.radians(roll))) < 6


def test_several_faces_each_drawn_with_its_own_pose(demo, faces_dir):
    left, right = (photo(faces_dir, n) for n in (LEFT_PROFILE, RIGHT_PROFILE))
    h = min(left.shape[0], right.shape[0])
    pair = np.hstack([cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h)) for im in (left, right)])
    split = round(left.shape[1] * h / left.shape[0])
    drawn, boxes, angles = analyse(demo, pair)
    assert len(boxes) >= 2
    by_side = {(b[0] + b[2]) / 2 < split: a for b, a in reversed(list(zip(boxes, angles, strict=True)))}
    assert by_side[True][0] > 15 and by_side[False][0] < -15  # largest box per half
    changed = np.abs(drawn.astype(int) - pair.astype(int)).sum(-1) > 30
    assert changed[:, :split].sum() > 100 and changed[:, split:].sum() > 100


def test_face_at_the_border_gets_the_clipped_official_crop(demo, faces_dir):
    """The 0.6 margin is clipped at the frame's edge (as the authors' demo and training data
    did), not padded; the pose barely moves."""
    image = photo(faces_dir, FRONTAL)
    _, full_boxes, full = analyse(demo, image)
    cut = np.ascontiguousarray(image[:, full_boxes[0][0] - 1 :])
    drawn, boxes, angles = analyse(demo, cut)
    assert boxes and boxes[0][0] < 10
    assert expand_box(boxes[0], cut.shape)[0] == 0
    assert np.abs(angles[0] - full[0]).max() < 8
    assert (drawn != cut).any()


def test_no_face_writes_the_image_unchanged(fusion_checkpoint, tmp_path, capsys):
    blank = np.full((240, 320, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "blank.png"), blank)
    out = tmp_path / "out" / "blank.png"
    assert main(["demo", str(tmp_path / "blank.png"), "-m", str(fusion_checkpoint), "-o", str(out)]) == 0
    assert np.array_equal(cv2.imread(str(out)), blank)
    printed = capsys.readouterr().out
    assert "blank.png: no face" in printed and "1 without a face" in printed


def test_folder_in_folder_out_and_montage(fusion_checkpoint, faces_dir, tmp_path):
    src = tmp_path / "photos" / "sub"
    src.mkdir(parents=True)
    for name in (LEFT_PROFILE, RIGHT_PROFILE):
        cv2.imwrite(str(src / Path(name).with_suffix(".png").name), photo(faces_dir, name))
    summary = run_demo([str(tmp_path / "photos")], str(fusion_checkpoint), f"{tmp_path / 'out'}/")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in summary.outputs) == [
        "sub/14424972_1.png",
        "sub/174692320_1.png",
    ]
    assert summary.frames == 2 and summary.faces >= 2
    sheet = tmp_path / "sheet.jpg"
    run_demo([str(tmp_path / "photos")], str(fusion_checkpoint), str(sheet), columns=2)
    assert cv2.imread(str(sheet)).shape[0] == 256


def test_video_in_video_out_with_every_frame(fusion_checkpoint, faces_dir, tmp_path, capsys):
    frames = [cv2.resize(np.roll(photo(faces_dir, FRONTAL), 6 * k, axis=1), (320, 240)) for k in range(6)]
    src, out = tmp_path / "clip.mp4", tmp_path / "clip-pose.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for f in frames:
        writer.write(f)
    writer.release()
    assert main(["demo", str(src), "-m", str(fusion_checkpoint), "-o", str(out)]) == 0
    assert "6 frames, 6 faces" in capsys.readouterr().out
    cap, read = cv2.VideoCapture(str(out)), []
    while (frame := cap.read()[1]) is not None:
        read.append(frame)
    cap.release()
    assert len(read) == 6 and read[0].shape == (240, 320, 3)
    assert np.abs(read[0].astype(int) - frames[0].astype(int)).mean() > 1  # FPS text and axes drawn
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    short = tmp_path / "short.avi"
    assert main(["demo", str(src), "-m", str(fusion_checkpoint), "-o", str(short), "--max-frames", "3"]) == 0
    assert int(cv2.VideoCapture(str(short)).get(cv2.CAP_PROP_FRAME_COUNT)) == 3


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, m: [str(d / "broken.jpg"), "-m", m, "-o", str(d / "o.jpg")], "broken.jpg: cannot read the image"),
        (lambda d, m: [str(d / "broken.mp4"), "-m", m, "-o", str(d / "o.mp4")], "broken.mp4: cannot read the video"),
        (lambda d, m: [str(d / "missing.jpg"), "-m", m, "-o", str(d / "o.jpg")], "missing.jpg: no such image"),
        (lambda d, m: ["99", "-m", m, "-o", str(d / "o.mp4")], "camera 99: cannot open"),
        # no -m: the packaged fusion loads, then the image is refused
        (lambda d, m: [str(d / "broken.jpg"), "-o", str(d / "o.jpg")], "broken.jpg: cannot read the image"),
        (lambda d, m: [str(d / "broken.jpg"), "-m", m], "nothing to do"),
        (lambda d, m: [str(d / "broken.jpg"), "-m", m, "-o", "o.jpg", "--detector", "dlib"], "--detector 'dlib'"),
        (lambda d, m: [str(d / "broken.jpg"), "-m", m, "-o", "o.jpg", "--detector", "lbp:no.xml"], "no.xml: no such"),
        (
            lambda d, m: [str(d / "broken.jpg"), "-m", m, "-o", "o.jpg", "--detector", f"yunet:{d / 'broken.jpg'}"],
            "YuNet",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_file(fusion_checkpoint, tmp_path, capsys, make_args, message):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 100)
    assert main(["demo", *make_args(tmp_path, str(fusion_checkpoint))]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jpg").exists() and not (tmp_path / "o.mp4").exists()


def test_show_needs_a_gui_build(fusion_checkpoint, faces_dir, capsys):
    gui = cv2.getBuildInformation().split("GUI:", 1)[1].split()[0]
    if gui != "NONE":
        pytest.skip(f"this OpenCV has a GUI ({gui}): --show would open a window")
    args = ["demo", str(faces_dir / f"{FRONTAL}.jpg"), "-m", str(fusion_checkpoint), "--show"]
    assert main(args) == 2
    assert "opencv-python-headless" in capsys.readouterr().err


def test_large_frames_are_searched_downscaled(faces_dir):
    """A 4x larger frame is searched at 640 pixels; the box comes back in the frame's pixels."""
    image = photo(faces_dir, FRONTAL)
    find = open_detector("haar")
    (x0, y0, x1, y1), big = find(image)[0], find(cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC))
    assert len(big) == 1
    bx0, by0, bx1, by1 = big[0]
    assert abs((bx0 + bx1) / 2 - 2 * (x0 + x1)) < 0.1 * 4 * (x1 - x0)
    assert abs((by0 + by1) / 2 - 2 * (y0 + y1)) < 0.1 * 4 * (y1 - y0)
    assert 0.8 < (bx1 - bx0) / (4 * (x1 - x0)) < 1.25


def test_demo_modules_need_neither_torch_nor_tensorflow():
    """A board runs the demo with numpy, OpenCV and one runtime (tqdm optional)."""
    import subprocess
    import sys

    code = (
        "import sys, fsanet.demo, fsanet.draw, fsanet.detectors; heavy = {'torch', 'tensorflow'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lbp_detector_of_the_authors_demo(official, demo, faces_dir):
    find = open_detector(f"lbp:{official.parent / 'lbpcascade_frontalface_improved.xml'}")
    boxes = find(photo(faces_dir, FRONTAL))
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    nose = read_pts(faces_dir / f"{FRONTAL}.pts")[30]
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1
