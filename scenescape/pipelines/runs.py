"""The run folder of both modes: every output written atomically, a marker, a lock, checkpoints.

Layout of a scene run (``NNNN`` = zero-padded frame index)::

    RUN_DIR/
      .scenescape-run.json  the marker: run id, mode, scenescape version, the command (written first)
      .scenescape-run.lock  locked while a process works here (the kernel drops it if the process dies)
      config.yaml          resolved SceneConfig (with the seed and the prompt)
      inputs/              the start image/depth as given (float .npy) and camera; index.json last
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

An object run has the same marker, lock, ``config.yaml``, ``inputs/`` (``prompt.json``) and
``manifest.json``, and ``checkpoint.pt`` (see :mod:`scenescape.pipelines.object.pipeline`).

Creation order: marker, ``config.yaml``, the inputs, then ``inputs/index.json`` (their SHA-256). A folder
without the index was interrupted while being created: ``--resume`` completes it when the config and every
input it records are there (the run starts from the beginning), and otherwise prints the command that
starts it again. ``--overwrite`` empties only a folder that carries the marker.

Checkpoints (scene): after frame ``i`` the mesh is saved - the vertices/faces added since the last
checkpoint as ``checkpoint/mesh-delta-NNNN.npz``, or a full ``mesh-NNNN.npz`` snapshot every 25 frames
(atomic) - then ``checkpoint/state.json`` (atomic) is replaced to list the files with their SHA-256 and a
SHA-256 of its own fields; only after that are unreferenced files deleted. A crash at any point leaves a
consistent state. A ``state.json`` that does not verify (checksum, types, ranges: the frame must be one of
the run's cameras) raises :class:`~scenescape.errors.RunError` before anything is written - a run never
silently restarts from a damaged checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
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

STATE_VERSION = 2
MARKER = ".scenescape-run.json"
"""Written first, and only by scenescape, when a run folder is created: ``--overwrite`` deletes only
folders that carry it, and ``--resume`` opens only those."""
LOCK = ".scenescape-run.lock"
"""Locked (``flock``) while a process works in the folder; the kernel drops the lock when the process dies."""
INPUTS_INDEX = "inputs/index.json"
"""Written last when a run is created (after config.yaml and every input): its presence means 'started'."""
MODES = ("scene", "object")
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")  # tempfile.mkstemp names of atomic_path
_CK_NAME = {"mesh": re.compile(r"^mesh-\d{4,}\.npz$"), "delta": re.compile(r"^mesh-delta-\d{4,}\.npz$"),
            "extra": re.compile(r"^extra-\d{4,}\.npz$")}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\x00" not in name


def frame_name(i: int) -> str:
    return f"{i:04d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _digest(obj: Any) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The run marker of folder ``path`` (None when there is none or it is not scenescape's)."""
    f = Path(path) / MARKER
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != "scenescape-run" or data.get("mode") not in MODES:
        return None
    if not isinstance(data.get("run_id"), str) or data.get("checksum") != _digest(
            {k: v for k, v in data.items() if k != "checksum"}):
        return None
    return data


def is_run_folder(path: str | Path) -> bool:
    """A folder scenescape created (it holds a valid :data:`MARKER`)."""
    return read_marker(path) is not None


def _own_leftover(name: str) -> bool:
    """The lock file, or the temporary file of a marker write that was interrupted."""
    return name == LOCK or (name.startswith("." + MARKER + ".") and bool(_TEMP.match(name)))


def _contents(p: Path) -> list[str]:
    """What a folder holds besides scenescape's own lock and interrupted-marker leftovers."""
    return sorted(x.name for x in p.iterdir() if not _own_leftover(x.name))


def restart_command(marker: dict[str, Any] | None, path: Path) -> str:
    """The command that starts a run folder's run again from scratch (from the marker's record)."""
    cmd = (marker or {}).get("command")
    if not cmd:
        return f"the command that created it, with --out {path} --overwrite"
    import shlex

    parts = [str(c) for c in cmd]
    if "--overwrite" not in parts:
        if "--out" not in parts:
            parts += ["--out", str(path)]
        parts.append("--overwrite")
    return shlex.join(parts)


# ---------------------------------------------------------------------------------------------- locks
_held: dict[str, list[Any]] = {}  # real path -> [open lock file, count]: re-entrant within a process
_held_lock = threading.Lock()


def _acquire(folder: Path) -> str:
    key = os.path.realpath(folder)
    with _held_lock:
        if key in _held:
            _held[key][1] += 1
            return key
        try:
            fh = open(folder / LOCK, "a+b")
        except OSError as e:
            raise RunError(f"cannot lock run folder '{folder}' ({e.strerror or e}); is it writable?") from e
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - no flock (Windows): no lock
            pass
        except OSError as e:
            fh.close()
            raise RunError(f"run folder '{folder}' is in use by another scenescape process (it holds {LOCK}); "
                           "wait for that run to finish, or choose another --out") from e
        _held[key] = [fh, 1]
        return key


def _release(key: str) -> None:
    with _held_lock:
        item = _held.get(key)
        if item is None:
            return
        item[1] -= 1
        if item[1] <= 0:
            item[0].close()  # closing the file drops the flock
            del _held[key]


class RunFolder:
    """Paths and atomic writers of one run folder (see the module docstring for the layout).

    A RunFolder made by :meth:`create`, :meth:`begin` or :meth:`open_existing` holds the folder's lock
    until :meth:`close` (or until it is garbage collected, or the process ends).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_key: str | None = None

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock_key is not None:
            _release(self._lock_key)
            self._lock_key = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _lock(self) -> None:
        if self._lock_key is None:
            self._lock_key = _acquire(self.path)

    @property
    def marker(self) -> dict[str, Any] | None:
        return read_marker(self.path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False, mode: str = "scene",
               command: list[str] | None = None, inputs: list[str] | None = None) -> RunFolder:
        """A new, empty run folder carrying the scenescape marker (and locked).

        An existing non-empty folder is an error (nothing is touched) unless ``overwrite``; even then
        only a folder that carries scenescape's marker is emptied, so ``--overwrite`` never deletes a
        folder scenescape did not make. ``inputs`` are the file names (under ``inputs/``) the run will
        save; a resume of a folder whose creation was interrupted checks them.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        p = Path(path)
        cls.check_new(p, overwrite)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run folder '{p}': {e.strerror or e}; choose another --out") from e
        run = cls(p)
        run._lock()
        try:
            cls.check_new(p, overwrite)  # again, under the lock
            for q in p.iterdir():
                if q.name != LOCK and _own_leftover(q.name):
                    q.unlink(missing_ok=True)
            found = _contents(p)
            if found:
                # the 'started' record first, so that a half-deleted folder reads as 'creation interrupted',
                # and the marker last (replaced below), so that a kill here leaves a marked folder
                (p / INPUTS_INDEX).unlink(missing_ok=True)
                for name in found:
                    if name == MARKER:
                        continue
                    q = p / name
                    if q.is_dir() and not q.is_symlink():
                        shutil.rmtree(q)
                    else:
                        q.unlink()
            import scenescape

            marker = {
                "format": "scenescape-run", "version": 1, "run_id": uuid.uuid4().hex, "mode": mode,
                "scenescape": scenescape.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": list(command) if command else None,
                "inputs": sorted(inputs or []),
            }
            marker["checksum"] = _digest(marker)
            write_json(p / MARKER, marker)
        except BaseException:
            run.close()
            raise
        return run

    @staticmethod
    def check_new(path: str | Path, overwrite: bool = False) -> None:
        """Raise :class:`RunError` unless a new run may be made in ``path`` (writes nothing): the path is
        absent, an empty folder, or (with ``overwrite``) a scenescape run folder."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunError(f"output path '{p}' exists and is not a folder; choose another --out")
        for q in [p, *p.parents]:
            if q.exists():
                if not q.is_dir():
                    raise RunError(f"cannot create run folder '{p}': '{q}' is a file; choose another --out")
                if not os.access(q, os.W_OK | os.X_OK):
                    raise RunError(f"cannot create run folder '{p}': '{q}' is not writable; choose another --out")
                break
        if not p.is_dir():
            return
        found = _contents(p)
        if not found:
            return
        marker = read_marker(p)
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        if marker is None:
            raise RunError(
                f"output folder '{p}' already exists and is not a scenescape run folder (it holds {shown} and no "
                f"{MARKER}); scenescape never deletes it, not even with --overwrite: choose another --out")
        if not overwrite:
            raise RunError(f"output folder '{p}' already holds a {marker['mode']} run; pass --resume {p} to continue "
                           "it, --overwrite to replace it, or choose another --out")

    @classmethod
    def begin(cls, path: str | Path, *, mode: str, config: Any, inputs: dict[str, Any], overwrite: bool = False,
              command: list[str] | None = None) -> RunFolder:
        """Create the folder and write, in this order, the marker, ``config.yaml`` and every input, then
        :data:`INPUTS_INDEX` (the 'started' record, with the inputs' SHA-256). ``inputs`` maps file names
        under ``inputs/`` to values: ``.npy`` -> a float32 array, ``.json`` -> JSON data (a Camera is
        written with ``to_dict``); None values are skipped."""
        from scenescape.config import save_yaml

        items = {k: v for k, v in inputs.items() if v is not None}
        run = cls.create(path, overwrite=overwrite, mode=mode, command=command, inputs=list(items))
        try:
            save_yaml(config, run.config_path)
            for name, value in items.items():
                f = run.path / "inputs" / name
                if name.endswith(".npy"):
                    save_npy(f, np.asarray(value, np.float32))
                else:
                    write_json(f, value.to_dict() if hasattr(value, "to_dict") else value)
            run._write_index()
        except BaseException:
            run.close()
            raise
        return run

    def _write_index(self) -> None:
        d = self.path / "inputs"
        files = {f.name: _sha256(f) for f in sorted(d.iterdir())
                 if f.is_file() and not f.name.startswith(".") and f.name != "index.json"} if d.is_dir() else {}
        write_json(self.path / INPUTS_INDEX, {"files": files})

    @property
    def started(self) -> bool:
        """Whether creation finished (config and inputs complete): :data:`INPUTS_INDEX` exists."""
        return (self.path / INPUTS_INDEX).is_file()

    @classmethod
    def open_existing(cls, path: str | Path, mode: str = "scene") -> RunFolder:
        """An existing run folder to resume (locked); errors say what is missing and what to do.

        A folder whose creation was interrupted (no :data:`INPUTS_INDEX`) can be resumed when its config and
        every input it records are on disk (the caller then calls :meth:`complete_creation`, after its own
        validation, and the run starts from frame/step 0); otherwise the error gives the command that starts
        it again. Nothing is written here.
        """
        p = Path(path)
        if not p.is_dir():
            raise RunError(f"cannot resume: run folder '{p}' does not exist")
        marker = read_marker(p)
        if marker is None:
            what = "is empty" if not _contents(p) else f"has no valid {MARKER}"
            raise RunError(f"cannot resume: '{p}' {what}, so it is not a scenescape run folder (or its creation was "
                           f"interrupted before anything was written); start the run again with --out {p} "
                           "--overwrite, or choose another --out")
        if marker["mode"] != mode:
            cmd = "scenescape object --resume" if marker["mode"] == "object" else "scenescape generate --resume"
            raise RunError(f"cannot resume: '{p}' holds a {marker['mode']} run; continue it with {cmd} {p}")
        run = cls(p)
        run._lock()
        try:
            if not run.started:
                expected = [str(n) for n in marker.get("inputs") or []]
                missing = ([] if run.config_path.is_file() else ["config.yaml"]) + [
                    f"inputs/{n}" for n in expected if not (p / "inputs" / n).is_file()]
                if missing:
                    raise RunError(
                        f"cannot resume: the run in '{p}' was interrupted while it was being created ({', '.join(missing)} "
                        f"never written), so nothing was computed; start it again with: {restart_command(marker, p)}")
            else:
                run._verify_inputs()
        except BaseException:
            run.close()
            raise
        return run

    def complete_creation(self) -> None:
        """Finish a creation that was interrupted after the config and inputs were saved (see
        :meth:`open_existing`), and drop the temporary files of interrupted atomic writes."""
        self.remove_temporaries()
        if not self.started:
            self._write_index()

    def _verify_inputs(self) -> None:
        f = self.path / INPUTS_INDEX
        try:
            files = json.loads(f.read_text())["files"]
            assert isinstance(files, dict)
        except Exception as e:
            raise RunError(f"cannot resume: '{f}' is corrupt ({type(e).__name__}); the run cannot be resumed - "
                           f"start again with --overwrite") from e
        for name, digest in files.items():
            q = self.path / "inputs" / str(name)
            if not _plain_name(str(name)) or not q.is_file() or _sha256(q) != digest:
                raise RunError(f"cannot resume: run input '{q}' is missing or was changed since the run started "
                               "(its checksum differs); a resume must use the inputs it started with")

    def remove_temporaries(self) -> list[Path]:
        """Delete the hidden temporary files an interrupted atomic write leaves (``.NAME.XXXX.SUFFIX``)."""
        removed = []
        for d in (self.path, *(self.path / s for s in ("frames", "depth", "masks", "inputs", "checkpoint",
                                                       "nerfstudio/depth", "validation"))):
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if f.is_file() and f.name not in (MARKER, LOCK) and _TEMP.match(f.name):
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
        payload = json.loads(json.dumps(payload, default=_plain))  # exactly what is written (and checksummed)
        payload["checksum"] = _digest(payload)
        write_json(self.state_path, payload)
        # copies, so that an in-place edit of the mesh later is seen as "not a pure append"
        self._last_saved = {"v": v.clone(), "f": f.clone(), "c": c.clone(), "base": base, "deltas": deltas}
        for p in ck.iterdir():  # files the new state no longer references (never the temporary ones)
            if p.suffix == ".npz" and not p.name.startswith(".") and p.name not in referenced:
                p.unlink(missing_ok=True)

    def _read_state_raw(self, n_cameras: int | None = None) -> dict[str, Any]:
        """``state.json``, verified: its checksum over its own fields, then every field's type and range."""
        f = self.state_path
        fix = (f"the run cannot be resumed - start again with --overwrite (this deletes '{self.path}') "
               "or another --out")
        try:
            data = json.loads(f.read_text())
        except Exception as e:
            raise RunError(f"checkpoint '{f}' is corrupt ({type(e).__name__}: {e}); {fix}") from e
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise RunError(f"checkpoint '{f}' is corrupt or from another version (version "
                           f"{data.get('version') if isinstance(data, dict) else None!r}, expected {STATE_VERSION}); {fix}")
        if data.get("checksum") != _digest({k: v for k, v in data.items() if k != "checksum"}):
            raise RunError(f"checkpoint '{f}' does not match its own checksum (it was edited or damaged); {fix}")
        frame = data.get("frame")
        if n_cameras is not None and isinstance(frame, int) and not 0 <= frame < n_cameras:
            raise RunError(f"checkpoint '{f}' is invalid: frame {frame} is outside the run's {n_cameras} cameras "
                           f"(0..{n_cameras - 1}); {fix}")
        problem = _state_problem(data)
        if problem:
            raise RunError(f"checkpoint '{f}' is invalid: {problem}; {fix}")
        return data

    def load_checkpoint(self) -> tuple[int, Any, dict[str, Any], dict[str, np.ndarray]] | None:
        """``(frame, mesh, state, extra)`` of the last checkpoint, or None if the run has none yet.

        Raises :class:`RunError` when a checkpoint exists but does not verify.
        """
        import torch

        ck = self.checkpoint_dir
        if not self.state_path.is_file():
            # killed before the first state.json: mesh files without a state are not a checkpoint (the next
            # checkpoint replaces them); the run starts from frame 0
            return None
        cams = self.load_cameras()
        if cams is None:
            raise RunError(f"run '{self.path}' has a checkpoint but no cameras.json: it is corrupt")
        data = self._read_state_raw(n_cameras=len(cams))
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


def _plain(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _state_problem(d: dict[str, Any]) -> str | None:
    """What is wrong with a ``state.json`` (None when every field has its type and range)."""
    frame = d.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        return f"'frame' must be an integer >= 0, got {frame!r}"
    files = d.get("files")
    if not isinstance(files, dict):
        return "'files' is missing"
    if not isinstance(files.get("mesh"), str) or not _CK_NAME["mesh"].match(files["mesh"]):
        return f"'files.mesh' must name a mesh-NNNN.npz, got {files.get('mesh')!r}"
    deltas = files.get("deltas")
    if not isinstance(deltas, list) or not all(isinstance(n, str) and _CK_NAME["delta"].match(n) for n in deltas):
        return f"'files.deltas' must list mesh-delta-NNNN.npz names, got {deltas!r}"
    if "extra" in files and not (isinstance(files["extra"], str) and _CK_NAME["extra"].match(files["extra"])):
        return f"'files.extra' must name an extra-NNNN.npz, got {files['extra']!r}"
    names = [files["mesh"], *deltas] + ([files["extra"]] if "extra" in files else [])
    for n in names:
        if int(re.findall(r"\d+", n)[-1]) > frame:
            return f"file '{n}' is from after frame {frame}"
    sums = d.get("sha256")
    if not isinstance(sums, dict) or set(sums) != set(names) or not all(
            isinstance(v, str) and _HEX64.match(v) for v in sums.values()):
        return "'sha256' must hold one SHA-256 per listed file"
    counts = d.get("counts")
    if not isinstance(counts, dict) or not all(
            isinstance(counts.get(k), int) and not isinstance(counts.get(k), bool) and counts[k] >= 0
            for k in ("vertices", "faces")):
        return f"'counts' must hold vertices and faces >= 0, got {counts!r}"
    state = d.get("state")
    if not isinstance(state, dict):
        return "'state' is missing"
    ft = state.get("frame_times", [])
    if not isinstance(ft, list) or len(ft) != frame + 1 or not all(_finite_number(x) for x in ft):
        return f"'state.frame_times' must list {frame + 1} times >= 0"
    tm = state.get("timings", {})
    if not isinstance(tm, dict) or not all(isinstance(k, str) and _finite_number(v) for k, v in tm.items()):
        return "'state.timings' must map stage names to seconds >= 0"
    return None


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


__all__ = ["INPUTS_INDEX", "LOCK", "MARKER", "RunFolder", "frame_name", "is_run_folder", "package_versions",
           "read_marker", "restart_command"]
