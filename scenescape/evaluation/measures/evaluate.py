"""``evaluate_run``: every measure that applies to a run, as one JSON-ready dict."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from scenescape.errors import InputError
from scenescape.evaluation.measures.rundata import RunData, load_run

MEASURES = ("consistency_3d", "photometric", "camera", "style", "seams", "clip")


def _clean(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_run(run: str | Path | RunData, clip: str | None = None, prompt: str | None = None,
                 measures: tuple[str, ...] | list[str] | None = None, device: str = "auto",
                 flow_method: str = "dis", features: str = "sift", offsets: tuple[int, ...] = (1, 2),
                 clip_scorer: Any = None) -> dict[str, Any]:
    """Evaluate a run folder (or a :class:`RunData`).

    Args:
        run: the run folder (scene or object run) or data already loaded.
        clip: a CLIP model (hub id or folder) for the CLIP measures; None skips them.
        prompt: the text the CLIP score is taken against (default: the run's prompt).
        measures: a subset of :data:`MEASURES` (default: all that apply: depth-based measures need the
            run's depth, seams its masks, CLIP a model).
        flow_method: ``dis`` or ``farneback``; features: ``sift`` or ``orb``; offsets: the neighbours of
            the 3D check.

    Returns ``{"run", "kind", "frames", "size", "prompt", "measures": {name: {"summary", "per_frame",
    "settings"}}, "skipped": {name: why}, "seconds": {name: s}}``; NaN values are None.
    """
    data = run if isinstance(run, RunData) else load_run(run)
    wanted = list(MEASURES if measures is None else measures)
    bad = [m for m in wanted if m not in MEASURES]
    if bad:
        raise InputError(f"unknown measure(s) {bad}; choose from {list(MEASURES)}")
    text = data.prompt if prompt is None else str(prompt)
    out: dict[str, Any] = {"run": str(data.path) if data.path else None, "kind": data.kind, "frames": data.n,
                           "size": [int(data.frames.shape[2]), int(data.frames.shape[1])], "prompt": text,
                           "measures": {}, "skipped": {}, "seconds": {}}
    res, skipped, secs = out["measures"], out["skipped"], out["seconds"]
    keep: dict = {}
    if data.n < 2:
        raise InputError(f"run has {data.n} frame; the measures compare frames, so at least 2 are needed")

    def timed(name: str, fn: Any) -> None:
        t = time.perf_counter()
        res[name] = fn()
        secs[name] = round(time.perf_counter() - t, 3)

    if "consistency_3d" in wanted:
        if data.depths is None:
            skipped["consistency_3d"] = "the run has no depth maps"
        else:
            from scenescape.evaluation.measures.consistency import consistency_3d

            timed("consistency_3d", lambda: consistency_3d(data.frames, data.depths, data.cameras, offsets=offsets,
                                                           keep=keep))
    if "photometric" in wanted:
        from scenescape.evaluation.measures.consistency import flow_consistency

        pred = keep if keep else None
        timed("photometric", lambda: flow_consistency(data.frames, data.cameras, data.depths, method=flow_method,
                                                      predicted=pred))
    if "camera" in wanted:
        from scenescape.evaluation.measures.cameras import camera_control

        timed("camera", lambda: camera_control(data.frames, data.cameras, data.depths, features=features))
    if "style" in wanted:
        from scenescape.evaluation.measures.style import style_drift

        timed("style", lambda: style_drift(data.frames))
    if "seams" in wanted:
        if data.masks is None:
            skipped["seams"] = "the run has no inpainting masks"
        else:
            from scenescape.evaluation.measures.style import seam_visibility

            timed("seams", lambda: seam_visibility(data.frames, data.masks, data.depths))
    if "clip" in wanted:
        if clip is None and clip_scorer is None:
            skipped["clip"] = "no CLIP model given (--clip MODEL)"
        else:
            from scenescape.evaluation.measures.clip_score import ClipScorer, clip_measures

            t = time.perf_counter()
            scorer = clip_scorer if clip_scorer is not None else ClipScorer(str(clip), device=device)
            secs["clip_load"] = round(time.perf_counter() - t, 3)
            timed("clip", lambda: clip_measures(data.frames, scorer, text))
            if not text.strip():
                skipped["clip_score"] = "the run has no prompt (pass --prompt TEXT); only the image drift is measured"
    return _clean(out)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers that summarise a run (the table ``scenescape evaluate`` prints)."""
    m = result["measures"]
    rows: dict[str, Any] = {}

    def put(label: str, measure: str, key: str) -> None:
        v = (m.get(measure) or {}).get("summary", {}).get(key)
        if v is not None:
            rows[label] = v

    put("3D consistency: colour L1 (0-1)", "consistency_3d", "colour_l1")
    put("3D consistency: PSNR (dB)", "consistency_3d", "psnr")
    put("3D consistency: depth abs-rel", "consistency_3d", "depth_abs_rel")
    put("3D consistency: co-visible fraction", "consistency_3d", "covisible")
    put("photometric: flow fwd-bwd error (px)", "photometric", "fb_error")
    put("photometric: flow vs cameras+depth EPE (px)", "photometric", "epe")
    put("camera: rotation error (deg)", "camera", "rotation_error_deg")
    put("camera: translation direction error (deg)", "camera", "translation_error_deg")
    put("style: colour drift (Lab)", "style", "colour_drift")
    put("style: texture (Gram) drift", "style", "style_drift")
    put("seams: gradient ratio (1 = invisible)", "seams", "seam_ratio")
    put("CLIP score (100 cos)", "clip", "clip_score")
    put("CLIP score slope (per frame)", "clip", "clip_score_slope")
    put("CLIP image drift (1 - cos to frame 0)", "clip", "clip_image_drift")
    return rows
