"""What the demo draws on a frame: the head's axes with its angles, landmarks, a status line.

The axes are those of `fsanet.pose` (the paper's Fig. 1: x red, y green, z blue; the blue axis
points where the face looks). As in the authors' demo, x and y are drawn thicker than z, so a
red axis stays visible when a profile lays the blue one over it. Each angle is written in the
colour of the axis it turns about in `pose.euler_to_matrix`: pitch about x (red), yaw about y
(green), roll about z (blue).
"""

from __future__ import annotations

import numpy as np

from fsanet.pose import euler_to_matrix

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)
BOX_COLOUR = (255, 255, 255)
# text in lighter shades of the axis colours: pure blue is unreadable on dark backgrounds
ANGLE_COLOURS = {"yaw": (90, 255, 90), "pitch": (90, 90, 255), "roll": (255, 170, 60)}
AXIS_SCALE = 0.8  # axis length as a fraction of the face box's larger side


def _font_scale(image: np.ndarray) -> float:
    """Text that stays legible from 256-pixel photos to full-HD video."""
    return max(0.4, min(image.shape[:2]) / 640)


def _thickness(scale: float) -> int:
    return max(1, round(scale * 1.5))


def line_height(scale: float) -> int:
    import cv2

    (_, h), base = cv2.getTextSize("Ay", cv2.FONT_HERSHEY_SIMPLEX, scale, _thickness(scale))
    return h + base + 2


def put_text(image: np.ndarray, text: str, org: tuple[int, int], colour, scale: float) -> None:
    """Text with a dark outline, readable on any background; `org` is the baseline's left end."""
    import cv2

    org = (int(org[0]), int(org[1]))
    thick = _thickness(scale)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def _label_origin(image: np.ndarray, box, lines: list[str], scale: float) -> tuple[int, int]:
    """Beside the box: right of it when the text fits there, else left of it, else inside."""
    import cv2

    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, _thickness(scale))[0][0] for t in lines)
    x0, y0, x1, _ = box
    pad = 4
    if x1 + pad + width < image.shape[1]:
        x = x1 + pad
    elif x0 - pad - width >= 0:
        x = x0 - pad - width
    else:
        x = max(0, x0 + pad)
    return x, max(y0, 0)


def axis_ends(angles, centre, size: float) -> np.ndarray:
    """Image points (3, 2) where the head's x, y and z axes of length `size` end."""
    rot = euler_to_matrix(*angles)
    return np.asarray(centre, dtype=np.float64)[None] + size * rot[:2].T


def draw_axes(image: np.ndarray, angles, centre, size: float, thickness: int) -> np.ndarray:
    import cv2

    start = tuple(int(round(c)) for c in centre)
    for end, colour, thick in zip(axis_ends(angles, centre, size), (RED, GREEN, BLUE), (2, 2, 0), strict=True):
        end = (int(round(end[0])), int(round(end[1])))
        cv2.line(image, start, end, colour, thickness + thick, cv2.LINE_AA)
    return image


def draw_face(image: np.ndarray, box, angles, thickness: int | None = None) -> np.ndarray:
    """The face box, its three axes from the box centre, and yaw/pitch/roll beside it (in place)."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    size = AXIS_SCALE * max(x1 - x0, y1 - y0)
    thickness = thickness or max(2, round(size / 40))
    cv2.rectangle(image, (x0, y0), (x1, y1), BOX_COLOUR, 1, cv2.LINE_AA)
    draw_axes(image, angles, ((x0 + x1) / 2, (y0 + y1) / 2), size=size, thickness=thickness)
    scale = _font_scale(image)
    lines = [f"{name} {value:+.1f}" for name, value in zip(ANGLE_COLOURS, angles, strict=True)]
    x, y = _label_origin(image, (x0, y0, x1, y1), lines, scale)
    for name, text in zip(ANGLE_COLOURS, lines, strict=True):
        y += line_height(scale)
        put_text(image, text, (x, y), ANGLE_COLOURS[name], scale)
    return image


def draw_landmarks(image: np.ndarray, points) -> np.ndarray:
    """Small yellow dots at 2-D landmarks (N, 2), to compare the axes with (in place)."""
    import cv2

    r = max(1, round(min(image.shape[:2]) / 250))
    for x, y in np.asarray(points, dtype=np.float64)[:, :2]:
        cv2.circle(image, (int(round(x)), int(round(y))), r, (0, 255, 255), -1, cv2.LINE_AA)
    return image


def draw_status(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """White lines of text at the top-left corner (frames per second, 'no face')."""
    scale = _font_scale(image)
    y = 2
    for text in lines:
        y += line_height(scale)
        put_text(image, text, (6, y), BOX_COLOUR, scale)
    return image


def montage(images: list[np.ndarray], columns: int, height: int = 256) -> np.ndarray:
    """Images resized to one height and laid out in rows of `columns`, on a black background."""
    import cv2

    if not images:
        raise ValueError("montage of no images")
    tiles = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height)) for im in images]
    width = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * height, columns * width, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x = c * width + (width - tile.shape[1]) // 2
        sheet[r * height : (r + 1) * height, x : x + tile.shape[1]] = tile
    return sheet
