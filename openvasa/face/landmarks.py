"""Index sets of the 478-point MediaPipe FaceMesh topology (468 mesh points + 2 x 5 iris points).

"Right"/"left" are the subject's: the right eye is on the image's left in a frontal portrait.
Contours are ordered so they can be drawn as polygons.
"""

import numpy as np

N_LANDMARKS = 478

# Eye lid margins, corner to corner (outer corner first).
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
# Lid pairs (upper, lower) across the middle of each eye, used for openness.
RIGHT_EYE_LID_PAIRS = ((160, 144), (159, 145), (158, 153))
LEFT_EYE_LID_PAIRS = ((387, 373), (386, 374), (385, 380))

RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)

# Lips, corner to corner. Inner contour bounds the mouth opening.
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
FOREHEAD_TOP = 10
CHIN = 152
NOSE_TIP = 1

# Points that move with the skull but hardly with expression: forehead, nose bridge, eye corners,
# cheekbones near the ears. Head pose is fitted on these alone.
RIGID = (
    10, 151, 9, 8, 109, 338, 67, 297, 108, 337, 168, 6, 197, 195, 5, 4,
    33, 133, 362, 263, 234, 454, 127, 356, 93, 323,
)  # fmt: skip

# Mirror pairs (right index, left index) used to define the frontal canonical frame.
SYMMETRIC_PAIRS = ((33, 263), (133, 362), (234, 454), (127, 356), (93, 323), (61, 291), (109, 338))


def contour(upper: tuple[int, ...], lower: tuple[int, ...]) -> np.ndarray:
    """Closed polygon index list from two corner-to-corner chains sharing their end points."""
    return np.array(list(upper) + list(lower[-2:0:-1]), dtype=np.int64)


RIGHT_EYE_CONTOUR = contour(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)
LEFT_EYE_CONTOUR = contour(LEFT_EYE_UPPER, LEFT_EYE_LOWER)
LIPS_INNER_CONTOUR = contour(LIPS_INNER_UPPER, LIPS_INNER_LOWER)
LIPS_OUTER_CONTOUR = contour(LIPS_OUTER_UPPER, LIPS_OUTER_LOWER)
LIPS = np.concatenate([LIPS_INNER_CONTOUR, LIPS_OUTER_CONTOUR])  # the 40 lip landmarks


def eye_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners, the scale unit of all ratios. points: (..., 478, 2|3)."""
    return np.linalg.norm(points[..., 33, :2] - points[..., 263, :2], axis=-1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap over eye distance. points: (..., 478, 2|3) -> (...)."""
    gaps = [np.linalg.norm(points[..., a, :2] - points[..., b, :2], axis=-1) for a, b in MOUTH_LIP_PAIRS]
    return np.mean(gaps, axis=0) / eye_distance(points)


def mouth_width(points: np.ndarray) -> np.ndarray:
    """Outer mouth-corner distance over eye distance (narrows as the lips round). points: (..., 478, 2|3) -> (...)."""
    left, right = LIPS_OUTER_UPPER[0], LIPS_OUTER_UPPER[-1]
    return np.linalg.norm(points[..., left, :2] - points[..., right, :2], axis=-1) / eye_distance(points)


def eye_openness(points: np.ndarray) -> np.ndarray:
    """Lid gap over eye width for (right, left) eye. points: (..., 478, 2|3) -> (..., 2)."""
    out = []
    for pairs, (a, b) in ((RIGHT_EYE_LID_PAIRS, RIGHT_EYE_CORNERS), (LEFT_EYE_LID_PAIRS, LEFT_EYE_CORNERS)):
        gap = np.mean([np.linalg.norm(points[..., u, :2] - points[..., d, :2], axis=-1) for u, d in pairs], 0)
        out.append(gap / np.linalg.norm(points[..., a, :2] - points[..., b, :2], axis=-1))
    return np.stack(out, axis=-1)
