"""Camera control: relative poses recovered from the frames alone, against the run's ``cameras.json``.

For each pair of frames ``(i, i + k)``: local features (SIFT or ORB, OpenCV), matched with Lowe's ratio
test, then the essential matrix with RANSAC (``cv2.findEssentialMat`` with the run's intrinsics) and
``cv2.recoverPose`` give the rotation and the direction of the translation from ``i`` to ``i + k``. Both are
compared with the saved cameras' relative pose (``X_j = R X_i + t``):

* rotation error: the angle of ``R_est R_true^T`` (degrees);
* translation-direction error: the angle between ``t_est`` and ``t_true`` (degrees).

A small translation has no measurable direction and makes the essential matrix ill-conditioned, so each
frame is paired with the nearest earlier frame far enough away (see :func:`camera_control`); a
rotation on the spot is measured with the homography's rotation ``K^-1 H K`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    u8 = np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)


def _detector(features: str) -> Any:
    import cv2

    if features == "sift":
        return cv2.SIFT_create(nfeatures=1500, contrastThreshold=0.01), cv2.NORM_L2
    if features == "orb":
        return cv2.ORB_create(nfeatures=3000, fastThreshold=5), cv2.NORM_HAMMING
    raise InputError(f"features must be 'sift' or 'orb', got {features!r}")


def relative_pose(a: Camera, b: Camera) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` with ``X_b = R X_a + t`` (camera coordinates of ``a`` to those of ``b``), float64."""
    rel = b.world_to_camera.double().numpy() @ a.camera_to_world.double().numpy()
    return rel[:3, :3], rel[:3, 3]


def rotation_angle_deg(r: np.ndarray) -> float:
    """Angle (degrees) of a rotation matrix."""
    c = (np.trace(r) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


def angle_between_deg(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-12 or nv < 1e-12:
        return float("nan")
    return math.degrees(math.acos(float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def _intrinsics(cam: Camera) -> np.ndarray:
    # OpenCV's pixel coordinates put the first pixel's centre at 0, scenescape's at 0.5
    return np.array([[cam.fx, 0.0, cam.cx - 0.5], [0.0, cam.fy, cam.cy - 0.5], [0.0, 0.0, 1.0]])


def match_features(img_a: np.ndarray, img_b: np.ndarray, features: str = "sift", ratio: float = 0.8,
                   cache: dict | None = None, keys: tuple[Any, Any] = (None, None)) -> tuple[np.ndarray, np.ndarray]:
    """Matched keypoints ``(pts_a (M, 2), pts_b (M, 2))`` in OpenCV pixel coordinates."""
    import cv2

    det, norm = _detector(features)

    def describe(img: np.ndarray, key: Any) -> tuple[Any, Any]:
        if cache is not None and key is not None and key in cache:
            return cache[key]
        kp, desc = det.detectAndCompute(_grey(img), None)
        if cache is not None and key is not None:
            cache[key] = (kp, desc)
        return kp, desc

    ka, da = describe(img_a, keys[0])
    kb, db = describe(img_b, keys[1])
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return np.zeros((0, 2)), np.zeros((0, 2))
    matcher = cv2.BFMatcher(norm)
    pairs = matcher.knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    pa = np.float64([ka[m.queryIdx].pt for m in good]).reshape(-1, 2)
    pb = np.float64([kb[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return pa, pb


def estimate_pose(pts_a: np.ndarray, pts_b: np.ndarray, cam: Camera, threshold: float = 1.0
                  ) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """``(R, t_unit, inliers)`` from matched points with the essential matrix (RANSAC); ``(None, None, n)``
    when it cannot be estimated (fewer than 8 matches)."""
    import cv2

    if len(pts_a) < 8:
        return None, None, len(pts_a)
    k = _intrinsics(cam)
    e, inl = cv2.findEssentialMat(pts_a, pts_b, k, method=cv2.USAC_MAGSAC, prob=0.9999, threshold=threshold)
    if e is None or e.shape != (3, 3):
        if e is not None and e.shape[0] > 3:
            e = e[:3]
        else:
            return None, None, 0
    n, r, t, _ = cv2.recoverPose(e, pts_a, pts_b, k, mask=inl.copy() if inl is not None else None)
    return r, t.reshape(3), int(n)


def homography_rotation(pts_a: np.ndarray, pts_b: np.ndarray, cam: Camera, threshold: float = 1.0
                        ) -> tuple[np.ndarray | None, int]:
    """Rotation of a (near) pure rotation from the homography ``H ~ K R K^-1`` (RANSAC), projected to SO(3)."""
    import cv2

    if len(pts_a) < 8:
        return None, len(pts_a)
    h, inl = cv2.findHomography(pts_a, pts_b, cv2.RANSAC, threshold)
    if h is None:
        return None, 0
    k = _intrinsics(cam)
    m = np.linalg.inv(k) @ h @ k
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = -r
    return r, int(inl.sum()) if inl is not None else 0


def _parallax_px(a: Camera, b: Camera, zmed: float) -> float:
    """Image motion (pixels) that the translation from ``a`` to ``b`` causes at depth ``zmed``: sideways
    ``f |t_xy| / z``, forward ``|t_z| / z`` times the half-width of the image."""
    _, t = relative_pose(a, b)
    return float(a.fx * np.linalg.norm(t[:2]) / zmed + abs(t[2]) / zmed * 0.5 * a.width)


def camera_control(frames: np.ndarray, cameras: Sequence[Camera], depths: np.ndarray | None = None,
                   features: str = "sift", min_parallax_px: float = 8.0, max_offset: int = 8,
                   threshold: float = 1.0) -> dict[str, Any]:
    """Camera control of a run (module docstring).

    Each frame ``i >= 1`` is paired with the nearest earlier frame ``i - k`` (``k <= max_offset``) whose true
    translation moves the scene by at least ``min_parallax_px`` pixels (at the median depth of frame
    ``i - k``; without depth, at 10 mean camera steps): the essential matrix gives the rotation and the
    translation direction. When no earlier frame is that far (a rotation on the spot), the pair is
    ``(i - 1, i)`` and only the rotation is measured, from the homography.

    Returns ``per_frame`` (NaN where undefined): ``rotation_error_deg``, ``translation_error_deg``,
    ``matches``, ``offset``; and ``summary``: means, medians, the worst rotation error, ``pairs_failed``.
    """
    n = len(cameras)
    rot = [float("nan")] * n
    trans = [float("nan")] * n
    nmatch = [0.0] * n
    offs = [0.0] * n
    failed = 0
    cache: dict = {}
    steps = [float(np.linalg.norm(relative_pose(cameras[i], cameras[i + 1])[1])) for i in range(n - 1)]
    zfallback = max(float(np.mean(steps)) * 10.0, 1e-9) if steps else 1.0
    zmed = []
    for i in range(n):
        d = depths[i][depths[i] > 0] if depths is not None else np.zeros(0)
        zmed.append(float(np.median(d)) if d.size else zfallback)
    for j in range(1, n):
        k_use = None
        for k in range(1, min(max_offset, j) + 1):
            if _parallax_px(cameras[j - k], cameras[j], zmed[j - k]) >= min_parallax_px:
                k_use = k
                break
        i = j - (k_use or 1)
        offs[j] = float(j - i)
        r_true, t_true = relative_pose(cameras[i], cameras[j])
        pa, pb = match_features(frames[i], frames[j], features, cache=cache, keys=(i, j))
        nmatch[j] = float(len(pa))
        if k_use is not None:
            r_est, t_est, _ = estimate_pose(pa, pb, cameras[i], threshold)
            if r_est is None:
                failed += 1
                continue
            trans[j] = angle_between_deg(t_est, t_true)
        else:
            r_est, _ = homography_rotation(pa, pb, cameras[i], threshold)
            if r_est is None:
                failed += 1
                continue
        rot[j] = rotation_angle_deg(r_est @ r_true.T)
    r_ok = np.asarray([x for x in rot if np.isfinite(x)])
    t_ok = np.asarray([x for x in trans if np.isfinite(x)])
    summary = {
        "rotation_error_deg": float(r_ok.mean()) if r_ok.size else float("nan"),
        "rotation_error_deg_median": float(np.median(r_ok)) if r_ok.size else float("nan"),
        "rotation_error_deg_max": float(r_ok.max()) if r_ok.size else float("nan"),
        "translation_error_deg": float(t_ok.mean()) if t_ok.size else float("nan"),
        "translation_error_deg_median": float(np.median(t_ok)) if t_ok.size else float("nan"),
        "pairs": n - 1, "pairs_failed": failed, "pairs_with_translation": int(t_ok.size),
    }
    return {"per_frame": {"rotation_error_deg": rot, "translation_error_deg": trans, "matches": nmatch,
                          "offset": offs},
            "summary": summary, "settings": {"features": features, "min_parallax_px": min_parallax_px,
                                             "max_offset": max_offset, "ransac_px": threshold}}
