"""The run folder: every output of a scene run, written atomically, and per-frame checkpoints.

Layout (``NNNN`` = zero-padded frame index)::

    RUN_DIR/
      config.yaml          resolved SceneConfig (with the seed)
      inputs/              the start image/depth as given (float .npy), so a resume restarts exactly
      frames/NNNN.png      RGB frames
      depth/NNNN.npy       float32 z-depth per frame, and depth/NNNN.png (false colour)
      masks/NNNN.png       the inpainted (new) pixels of each frame (255 = new)
      cameras.json         per-frame intrinsics and world_to_camera (OpenCV camera axes, Z-up world)
      transforms.json      nerfstudio format (camera-to-world, OpenGL camera axes, same Z-up world)
      nerfstudio/depth/    NNNN.npy: z-depth x 1000 (nerfstudio's default unit scale 1e-3 reads scene units)
      video.mp4            H.264 walkthrough
      mesh.ply, mesh.glb   the scene mesh with vertex colours (PLY: Z-up world, sRGB; GLB: y-up, linear, cameras)

World frame of every file: Z up, ``(x, z, -y)`` of the first camera's OpenCV frame (:mod:`scenescape.io.world`).
      manifest.json        versions, timings per stage, backends used, seed
      checkpoint/          state.json + mesh-NNNN.npz (+ mesh-delta-NNNN.npz, extra-NNNN.npz) (resume)

Checkpoints: after frame ``i`` the mesh is saved - the vertices/faces added since the last checkpoint as
``checkpoint/mesh-delta-NNNN.npz``, or a full ``mesh-NNNN.npz`` snapshot every 25 frames (atomic) - then
``checkpoint/state.json`` (atomic) is replaced to list the files with their SHA-256; only after that are
unreferenced files deleted. A crash at any point leaves a consistent state. A checkpoint that does not
verify raises :class:`~scenescape.errors.RunError` - a run never silently restarts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import RunError
from scenescape.io import (
    colorize_depth,
    depth_color_range,
    load_image,
    read_json,
    save_image,
    save_mask,
    save_npy,
    write_json,
)
from scenescape.io.meshes import load_mesh, save_mesh

STATE_VERSION = 1
_MARKERS = ("config.yaml", "checkpoint", "manifest.json")


def frame_name(i: int) -> str:
    return f"{i:04d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def is_run_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / m).exists() for m in _MARKERS)


class RunFolder:
    """Paths and atomic writers of one run folder (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> RunFolder:
        """A new, empty run folder.

        An existing non-empty folder is an error (nothing is touched) unless ``overwrite``; even then
        only a folder that is a scenescape run folder is deleted (so ``--overwrite`` never wipes an
        unrelated directory).
        """
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunError(f"output path '{p}' exists and is not a folder")
        if p.is_dir() and any(p.iterdir()):
            if not overwrite:
                raise RunError(
                    f"output folder '{p}' already exists; pass --resume {p} to continue it, --overwrite to "
                    "replace it, or choose another --out"
                )
            if not is_run_folder(p):
                raise RunError(
                    f"--overwrite refused: '{p}' is not a scenescape run folder (no config.yaml/checkpoint); "
                    "delete it yourself or choose another --out"
                )
            shutil.rmtree(p)
        p.mkdir(parents=True, exist_ok=True)
        return cls(p)

    @classmethod
    def open_existing(cls, path: str | Path) -> RunFolder:
        """An existing run folder to resume; errors say what is missing."""
        p = Path(path)
        if not p.is_dir():
            raise RunError(f"cannot resume: run folder '{p}' does not exist")
        if not (p / "config.yaml").is_file():
            raise RunError(f"cannot resume: '{p}' has no config.yaml (is it a scenescape run folder?)")
        run = cls(p)
        run.remove_temporaries()
        return run

    def remove_temporaries(self) -> list[Path]:
        """Delete the hidden temporary files an interrupted atomic write leaves (``.NAME.XXXX.SUFFIX``)."""
        removed = []
        for d in (self.path, *(self.path / s for s in ("frames", "depth", "masks", "inputs", "checkpoint",
                                                       "nerfstudio/depth"))):
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if f.is_file() and f.name.startswith(".") and f.name.count(".") >= 3:
                    f.unlink(missing_ok=True)
                    removed.append(f)
        return removed

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def state_path(self) -> Path:
        return self.checkpoint_dir / "state.json"

    def frame_path(self, i: int) -> Path:
        return self.path / "frames" / f"{frame_name(i)}.png"

    def depth_path(self, i: int) -> Path:
        return self.path / "depth" / f"{frame_name(i)}.npy"

    def depth_png_path(self, i: int) -> Path:
        return self.path / "depth" / f"{frame_name(i)}.png"

    def mask_path(self, i: int) -> Path:
        return self.path / "masks" / f"{frame_name(i)}.png"

    # ------------------------------------------------------------------ inputs and cameras
    def save_inputs(self, image: Any | None, depth: Any | None, camera: Any | None = None) -> None:
        """Keep the exact start inputs (float arrays) so a resume starts from the same data."""
        d = self.path / "inputs"
        if image is not None:
            save_npy(d / "image.npy", np.asarray(image, np.float32))
        if depth is not None:
            save_npy(d / "depth.npy", np.asarray(depth, np.float32))
        if camera is not None:
            write_json(d / "camera.json", camera.to_dict())

    def load_inputs(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        d = self.path / "inputs"
        out = []
        for name in ("image.npy", "depth.npy"):
            f = d / name
            if f.is_file():
                try:
                    out.append(np.load(f, allow_pickle=False))
                except Exception as e:
                    raise RunError(f"run input '{f}' is corrupt ({type(e).__name__}: {e})") from e
            else:
                out.append(None)
        return out[0], out[1]

    def save_cameras(self, cameras: list[Any]) -> None:
        """``cameras.json`` in the run's Z-up world frame (:func:`scenescape.io.world.cameras_to_file_json`)."""
        from scenescape.io.world import cameras_to_file_json

        write_json(self.path / "cameras.json", cameras_to_file_json(list(cameras), "scene"))

    def load_cameras(self) -> list[Any] | None:
        """The run's cameras in library coordinates (converted back from ``cameras.json``'s world frame)."""
        from scenescape.io.world import cameras_from_file_json

        f = self.path / "cameras.json"
        if not f.is_file():
            return None
        try:
            return cameras_from_file_json(read_json(f), "scene")
        except Exception as e:
            raise RunError(f"'{f}' is corrupt ({type(e).__name__}: {e})") from e

    def nerfstudio_depth_path(self, i: int) -> Path:
        return self.path / "nerfstudio" / "depth" / f"{frame_name(i)}.npy"

    def save_transforms(self, cameras: list[Any]) -> None:
        """``transforms.json`` for nerfstudio, in the same Z-up world as ``mesh.ply`` (its ``ply_file_path``).

        Depth for nerfstudio goes to ``nerfstudio/depth/NNNN.npy``: float32 z-depth x 1000, because nerfstudio's
        dataparser multiplies depth files by ``depth_unit_scale_factor`` (default 1e-3, millimetres); with its
        defaults it then reads the depth in scene units, the units of the poses and the PLY.
        """
        from scenescape.io.nerfstudio import DEPTH_UNIT_SCALE_FACTOR, to_nerfstudio_transforms
        from scenescape.io.world import camera_in_world

        n = len(cameras)
        for i in range(n):
            if self.depth_path(i).is_file():
                d = np.load(self.depth_path(i), allow_pickle=False).astype(np.float32)
                save_npy(self.nerfstudio_depth_path(i), d / np.float32(DEPTH_UNIT_SCALE_FACTOR))
        world_cams = [camera_in_world(c, "scene") for c in cameras]
        data = to_nerfstudio_transforms(
            world_cams,
            [f"frames/{frame_name(i)}.png" for i in range(n)],
            depth_paths=[f"nerfstudio/depth/{frame_name(i)}.npy" for i in range(n)],
            mask_paths=None,
            ply_path="mesh.ply",
        )
        write_json(self.path / "transforms.json", data)

    # ------------------------------------------------------------------ per-frame outputs
    def save_frame(self, i: int, image: Any, depth: Any, mask: Any, depth_png: bool = True) -> None:
        save_image(self.frame_path(i), image)
        save_npy(self.depth_path(i), np.asarray(depth, np.float32))
        if depth_png:
            save_image(self.depth_png_path(i), colorize_depth(depth, depth_range=self.depth_png_range(depth)))
        save_mask(self.mask_path(i), mask)

    @property
    def depth_scale_path(self) -> Path:
        return self.path / "depth" / "colour_scale.json"

    def depth_png_range(self, depth: Any) -> tuple[float, float]:
        """The run's one colour scale for ``depth/NNNN.png``: ``(near, far)`` z-depth, fixed from the
        first frame written (frame 0: :func:`scenescape.io.files.depth_color_range`) and stored in
        ``depth/colour_scale.json``, so a colour means the same depth in every frame (and after --resume)."""
        f = self.depth_scale_path
        if f.is_file():
            try:
                data = read_json(f)
                near, far = float(data["near"]), float(data["far"])
                if 0 < near <= far < float("inf"):
                    return near, far
            except Exception:
                pass
            raise RunError(f"'{f}' is corrupt; delete it to fix the depth colour scale from the next frame written")
        near, far = depth_color_range(depth)
        write_json(f, {"near": near, "far": far, "space": "inverse depth, linear", "colormap": "turbo",
                       "note": "fixed from frame 0's depth (1st-99th percentile); near = bright, far = dark"})
        return near, far

    def load_frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image (H,W,3) float, depth (H,W), mask (H,W) bool)`` of a written frame."""
        try:
            img = load_image(self.frame_path(i))
            depth = np.load(self.depth_path(i), allow_pickle=False)
            import imageio.v3 as iio

            mask = iio.imread(self.mask_path(i)) > 127
        except Exception as e:
            raise RunError(f"frame {i} of run '{self.path}' is missing or corrupt ({type(e).__name__}: {e}); "
                           "the run cannot be resumed") from e
        return img, depth, mask

    # ------------------------------------------------------------------ checkpoints
    REBASE_EVERY = 25

    def save_checkpoint(self, frame: int, mesh: Any, state: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Checkpoint after ``frame`` completed (see the module docstring for the protocol).

        The mesh only grows by appending, so most checkpoints write just the vertices, colours and faces
        added since the previous one (``mesh-delta-NNNN.npz``) on top of a full snapshot
        (``mesh-NNNN.npz``, rewritten every ``REBASE_EVERY`` frames or whenever the mesh was not a pure
        append). Every file is listed in ``state.json`` with its SHA-256.
        """
        import torch

        ck = self.checkpoint_dir
        ck.mkdir(parents=True, exist_ok=True)
        old = self._read_state_raw() if self.state_path.is_file() else None
        last = getattr(self, "_last_saved", None)
        v, f, c = mesh.vertices, mesh.faces, mesh.colors
        appended = (
            last is not None and old is not None and len(last["deltas"]) < self.REBASE_EVERY
            and v.shape[0] >= last["v"].shape[0] and f.shape[0] >= last["f"].shape[0]
            and torch.equal(v[: last["v"].shape[0]], last["v"]) and torch.equal(f[: last["f"].shape[0]], last["f"])
            and torch.equal(c[: last["c"].shape[0]], last["c"])
        )
        sums: dict[str, str] = {}
        if appended:
            nv, nf = last["v"].shape[0], last["f"].shape[0]
            delta = ck / f"mesh-delta-{frame_name(frame)}.npz"
            from scenescape.io import atomic_path

            with atomic_path(delta) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, vertices=v[nv:].detach().cpu().numpy(), colors=c[nv:].detach().cpu().numpy(),
                         faces=f[nf:].detach().cpu().numpy())
            base = last["base"]
            deltas = [*last["deltas"], delta.name]
            sums = dict(old.get("sha256") or {})
            sums[delta.name] = _sha256(delta)
        else:
            base_file = ck / f"mesh-{frame_name(frame)}.npz"
            save_mesh(mesh, base_file)  # exact .npz checkpoint, atomic
            base, deltas = base_file.name, []
            sums[base] = _sha256(base_file)
        files: dict[str, Any] = {"mesh": base, "deltas": deltas}
        if extra:
            from scenescape.io import atomic_path

            extra_file = ck / f"extra-{frame_name(frame)}.npz"
            with atomic_path(extra_file) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(val) for k, val in extra.items()})
            files["extra"] = extra_file.name
            sums[extra_file.name] = _sha256(extra_file)
        referenced = {base, *deltas, *([files["extra"]] if "extra" in files else [])}
        payload = {
            "version": STATE_VERSION,
            "frame": int(frame),
            "files": files,
            "sha256": {k: val for k, val in sums.items() if k in referenced},
            "counts": {"vertices": int(v.shape[0]), "faces": int(f.shape[0])},
            "state": state,
            "time": time.time(),
        }
        write_json(self.state_path, payload)
        # copies, so that an in-place edit of the mesh later is seen as "not a pure append"
        self._last_saved = {"v": v.clone(), "f": f.clone(), "c": c.clone(), "base": base, "deltas": deltas}
        for p in ck.iterdir():  # files the new state no longer references (never the temporary ones)
            if p.suffix == ".npz" and not p.name.startswith(".") and p.name not in referenced:
                p.unlink(missing_ok=True)

    def _read_state_raw(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text())
        except Exception as e:
            raise RunError(
                f"checkpoint '{self.state_path}' is corrupt ({type(e).__name__}: {e}); the run cannot be "
                f"resumed - start again with --overwrite (this deletes '{self.path}') or another --out"
            ) from e
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION or not isinstance(data.get("frame"), int):
            raise RunError(f"checkpoint '{self.state_path}' is corrupt or from another version (no valid 'frame')")
        return data

    def load_checkpoint(self) -> tuple[int, Any, dict[str, Any], dict[str, np.ndarray]] | None:
        """``(frame, mesh, state, extra)`` of the last checkpoint, or None if the run has none yet.

        Raises :class:`RunError` when a checkpoint exists but does not verify.
        """
        import torch

        ck = self.checkpoint_dir
        if not self.state_path.is_file():
            leftovers = [p.name for p in ck.glob("*") if not p.name.startswith(".")] if ck.is_dir() else []
            if leftovers:
                raise RunError(f"checkpoint folder '{ck}' has files {leftovers} but no state.json: it is corrupt; "
                               "start again with --overwrite or another --out")
            return None
        data = self._read_state_raw()
        files = data.get("files") or {}
        sums = data.get("sha256") or {}
        base = files.get("mesh")
        deltas = files.get("deltas") or []
        if not isinstance(base, str) or not isinstance(deltas, list):
            raise RunError(f"checkpoint '{self.state_path}' names no mesh file: it is corrupt")
        names = [base, *deltas] + ([files["extra"]] if files.get("extra") else [])
        for name in names:
            p = ck / str(name)
            if not p.is_file():
                raise RunError(f"checkpoint file '{p}' is missing: the checkpoint is corrupt")
            if sums.get(name) != _sha256(p):
                raise RunError(f"checkpoint file '{p}' does not match its checksum: the checkpoint is corrupt")
        from scenescape.geometry.mesh import SceneMesh

        try:
            mesh = load_mesh(ck / base)
            if deltas:
                vs, cs, fs = [mesh.vertices], [mesh.colors], [mesh.faces]
                for name in deltas:
                    with np.load(ck / name, allow_pickle=False) as z:
                        vs.append(torch.from_numpy(z["vertices"]))
                        cs.append(torch.from_numpy(z["colors"]))
                        fs.append(torch.from_numpy(z["faces"]))
                mesh = SceneMesh(torch.cat(vs), torch.cat(fs), torch.cat(cs))
        except Exception as e:
            raise RunError(f"checkpoint mesh in '{ck}' cannot be read ({type(e).__name__}: {e})") from e
        counts = data.get("counts") or {}
        if counts and (counts.get("vertices") != mesh.num_vertices or counts.get("faces") != mesh.num_faces):
            raise RunError(f"checkpoint '{self.state_path}': the mesh files do not add up to the recorded size")
        extra: dict[str, np.ndarray] = {}
        if files.get("extra"):
            with np.load(ck / files["extra"], allow_pickle=False) as z:
                extra = {k: z[k] for k in z.files}
        return int(data["frame"]), mesh, dict(data.get("state") or {}), extra

    # ------------------------------------------------------------------ final outputs
    def write_video(self, n_frames: int, fps: float) -> Path:
        from scenescape.io import write_video

        out = self.path / "video.mp4"
        write_video(out, (load_image(self.frame_path(i)) for i in range(n_frames)), fps=fps)
        return out

    def write_mesh(self, mesh: Any, formats: list[str], cameras: list[Any] | None = None) -> list[Path]:
        """``mesh.<fmt>`` files in the run's world frame (:mod:`scenescape.io.world`); ``cameras`` are
        embedded where the format can hold them (glTF camera nodes)."""
        from scenescape.io.meshes import save_mesh

        out = []
        for fmt in formats:
            p = self.path / f"mesh.{fmt.lstrip('.')}"
            save_mesh(mesh, p, frame="scene", cameras=cameras)
            out.append(p)
        return out

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.path / "manifest.json", manifest)


def package_versions() -> dict[str, str]:
    """Versions of the packages a run depends on (only those importable)."""
    import importlib.metadata as md
    import platform
    import sys

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("scenescape", "torch", "numpy", "opencv-python-headless", "opencv-contrib-python-headless",
                 "trimesh", "scipy", "imageio-ffmpeg", "diffusers", "transformers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


__all__ = ["RunFolder", "frame_name", "is_run_folder", "package_versions"]
