"""Writing a scene run to its run folder: frames and checkpoints on a background thread, then the final
outputs and the manifest."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from scenescape.backends.base import BackendConfig
from scenescape.geometry.mesh import SceneMesh
from scenescape.pipelines.runs import RunFolder, package_versions
from scenescape.pipelines.scene.config import OutputConfig, SceneConfig


class FrameWriter:
    """Writes each finished frame and then its checkpoint, in that order, on one background thread
    (``output.async_write``) so that PNG encoding and mesh saving overlap the next frame's work.

    A checkpoint for frame ``i`` is only written after frame ``i``'s files, so a resume never points past
    what is on disk. Errors surface at the next call or at :meth:`close`.
    """

    def __init__(self, run: RunFolder | None, output: OutputConfig):
        self.output = output
        self.run = run
        self.lock = threading.Lock()
        self.timings = {"write": 0.0, "checkpoint": 0.0}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="scenescape-writer") if output.async_write else None
        self.futures: list[Any] = []

    def submit(self, i: int, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, mesh: Any,
               state: dict[str, Any], extra: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._check()
        snap = (mesh.vertices.clone(), mesh.faces.clone(), mesh.colors.clone())  # the mesh as of frame i
        job = (i, image, depth, mask, snap, state, extra)
        if self.pool is None:
            self._write(*job)
        else:
            self.futures.append(self.pool.submit(self._write, *job))

    def _write(self, i: int, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, snap: tuple, state: dict,
               extra: dict) -> None:
        t = time.perf_counter()
        self.run.save_frame(i, image, depth, mask, depth_png=self.output.depth_png)
        t2 = time.perf_counter()
        if self.output.checkpoint:
            mesh = SceneMesh(*snap, device=snap[0].device)
            with self.lock:
                state = dict(state, timings={**state["timings"], **self.timings})
            self.run.save_checkpoint(i, mesh, state, extra)
        t3 = time.perf_counter()
        with self.lock:
            self.timings["write"] += t2 - t
            self.timings["checkpoint"] += t3 - t2

    def _check(self) -> None:
        done = [f for f in self.futures if f.done()]
        for f in done:
            f.result()  # re-raise a writer error here
        self.futures = [f for f in self.futures if not f.done()]

    def close(self) -> None:
        if self.pool is not None:
            try:
                for f in self.futures:
                    f.result()
            finally:
                self.pool.shutdown(wait=True)
                self.futures = []


def finish_run(run: RunFolder, result: Any, cfg: SceneConfig, prompt: str, device: str,
               backends: dict[str, Any], loop_s: float) -> None:
    """Write the run's final outputs (cameras, transforms, video, meshes) and then its manifest.

    ``result`` is the :class:`~scenescape.pipelines.scene.SceneResult`; its ``timings`` gain ``video`` and
    ``mesh_export``. ``backends``: :func:`describe_backend` of each backend, for the manifest.
    """
    t = time.perf_counter()
    run.save_cameras(result.cameras)
    run.save_transforms(result.cameras)
    if cfg.output.video:
        run.write_video(len(result.frames), cfg.output.fps)
    t_video = time.perf_counter() - t
    t = time.perf_counter()
    run.write_mesh(result.mesh, cfg.output.mesh_formats)
    t_mesh = time.perf_counter() - t
    result.timings["video"] = t_video
    result.timings["mesh_export"] = t_mesh
    manifest = {
        "scenescape": "scene",
        "prompt": prompt,
        "seed": cfg.seed,
        "frames": len(result.frames),
        "size": [cfg.width, cfg.height],
        "device": device,
        "backends": backends,
        "versions": package_versions(),
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "frame_times_s": [round(x, 4) for x in result.frame_times],
        "loop_s": round(loop_s, 3),
        "mesh": {"vertices": int(count_items(result.mesh, "vertices")), "faces": int(count_items(result.mesh, "faces"))},
        "outputs": sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".")),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    run.write_manifest(manifest)


def describe_backend(obj: Any, section: BackendConfig) -> dict[str, Any] | None:
    """Class, registered name, options and model id of a backend, for the manifest (None if absent)."""
    if obj is None:
        return None
    out: dict[str, Any] = {"class": f"{type(obj).__module__}:{type(obj).__qualname__}"}
    if section.name:
        out["name"] = section.name
        out["options"] = dict(section.options)
    for attr in ("model_id", "model_name", "model"):
        v = getattr(obj, attr, None)
        if isinstance(v, str):
            out["model"] = v
            break
    return out


def count_items(mesh: Any, attr: str) -> int:
    v = getattr(mesh, attr, None)
    return 0 if v is None else len(v)


__all__ = ["FrameWriter", "count_items", "describe_backend", "finish_run"]
