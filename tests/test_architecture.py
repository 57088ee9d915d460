"""The package's structure: layers import downward only, scene mode's step exists once and every caller runs
it, oracle backends stay out of the production registry, and the CLI maps only user errors to exit 2."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import scenescape

PKG = Path(scenescape.__file__).resolve().parent

# rank of each top-level part of the package: a module may import its own rank or lower, never higher.
# evaluation (synthetic worlds, oracles, metrics) and testing (tiny models) sit apart: production code
# (everything but cli) never imports them.
RANKS = {
    "errors": 0, "devices": 0,
    "geometry": 1,
    "io": 2, "config": 2, "registry": 2,
    "trajectories": 3,
    "backends": 4, "fields": 4,
    "pipelines": 5,
    "evaluation": 6, "testing": 6, "viewer": 6,
    "cli": 7,
}
APART = {"evaluation", "testing"}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "scenescape" or len(parts) < 2:
        return None
    return parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out.append((name, f))
    return out


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                if path.name == "__init__.py" and node.level > 1:
                    base = base[: -(node.level - 1)]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return found


def test_imports_point_down_only():
    bad = []
    for module, path in _modules():
        src = _part(module)
        if src is None or src == "__main__":
            continue  # the package's lazy top-level API
        for target in _imports(path, module):
            dst = _part(target)
            if dst is None or dst == src:
                continue
            if dst in APART and src not in APART and src != "cli":
                bad.append(f"{module} imports {target} (production code must not use {dst})")
            elif RANKS[dst] > RANKS[src]:
                bad.append(f"{module} ({src}, layer {RANKS[src]}) imports {target} ({dst}, layer {RANKS[dst]})")
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(m) for m, _ in _modules()} - {None, "__main__"}
    assert parts <= set(RANKS), f"parts without a layer in this test: {sorted(parts - set(RANKS))}"


def _calls(fn: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def test_exactly_one_function_renders_and_extends_the_mesh():
    """Outside the geometry primitives, only the warp-inpaint step extends a mesh from a new view."""
    extenders = []
    for module, path in _modules():
        if _part(module) == "geometry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "extend_from_rgbd" in _calls(node):
                extenders.append(f"{module}.{node.name}")
    assert extenders == ["scenescape.pipelines.scene.step.warp_inpaint_step"]
    step_src = (PKG / "pipelines" / "scene" / "step.py").read_text()
    fn = next(n for n in ast.walk(ast.parse(step_src)) if getattr(n, "name", "") == "warp_inpaint_step")
    assert {"render_mesh", "extend_from_rgbd"} <= _calls(fn)


def test_oracle_fusion_and_the_pipeline_both_run_the_step(monkeypatch):
    import scenescape.pipelines.scene as scene_pkg
    import scenescape.pipelines.scene.pipeline as pipeline_mod
    from scenescape.evaluation import default_camera, fuse_with_oracle, make_world
    from scenescape.pipelines.scene import SceneConfig, ScenePipeline
    from scenescape.pipelines.scene.step import warp_inpaint_step
    from scenescape.trajectories import build_trajectory

    calls: list[str] = []

    def counting(*args, **kwargs):
        calls.append(type(kwargs["inpainter"]).__name__)
        return warp_inpaint_step(*args, **kwargs)

    monkeypatch.setattr(scene_pkg, "warp_inpaint_step", counting)  # fuse_with_oracle's import
    monkeypatch.setattr(pipeline_mod, "warp_inpaint_step", counting)  # the pipeline's
    w = make_world("room")
    cam = default_camera(w, 32, 32, 31.0)
    cams = build_trajectory("forward", cam, 3, scene_scale=2.0)
    fuse_with_oracle(w, cams)
    assert calls == ["OracleInpainter"] * 2
    calls.clear()
    cfg = SceneConfig.load(None, ["width=32", "height=32", "focal=31.0", "frames=3", "depth.name=oracle",
                                  "inpainter.name=oracle"])
    img, dep = w.render(cam)
    ScenePipeline.from_config(cfg).run(cameras=cams, init_image=img.numpy(), init_depth=dep.numpy(), progress=False)
    assert calls == ["OracleInpainter"] * 2


def test_oracle_backends_are_registered_only_by_the_evaluation_package():
    code = ("import scenescape.backends as b, scenescape.pipelines, scenescape.cli; "
            "print('oracle' in b.DEPTH.names(), 'oracle' in b.INPAINTERS.names()); "
            "import scenescape.evaluation; print('oracle' in b.DEPTH.names(), 'oracle' in b.INPAINTERS.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]


def test_cli_maps_user_errors_to_exit_2_and_shows_bugs(monkeypatch, tmp_path):
    import scenescape.io.meshes as meshes
    from scenescape.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(tmp_path / "missing.ply"), str(tmp_path / "out.obj")])
    assert res.exit_code == 2 and "error:" in res.output and "missing.ply" in res.output

    def broken(*a, **k):
        raise RuntimeError("an internal bug")

    (tmp_path / "m.ply").write_bytes(b"")
    res = runner.invoke(cli, ["export", str(tmp_path / "m.ply"), str(tmp_path / "out.obj")])
    assert res.exit_code == 2 and "cannot read mesh file" in res.output and "m.ply" in res.output  # corrupt input

    monkeypatch.setattr(meshes, "load_mesh", broken)
    res = runner.invoke(cli, ["export", str(tmp_path / "m.ply"), str(tmp_path / "out.obj")])
    assert res.exit_code == 1 and isinstance(res.exception, RuntimeError)  # a bug is not dressed as user error
    assert "error:" not in res.output


def test_user_errors_share_one_hierarchy():
    from scenescape.errors import ConfigError, InputError, ModelNotFoundError, RunError, ScenescapeError

    for cls in (ConfigError, InputError, ModelNotFoundError, RunError):
        assert issubclass(cls, ScenescapeError)
    assert issubclass(InputError, ValueError) and issubclass(ConfigError, ValueError)
    from scenescape.pipelines.scene import SceneConfig

    with pytest.raises(ConfigError, match="frames"):
        SceneConfig(frames=0)
    from scenescape.geometry.camera import Camera

    with pytest.raises(InputError):
        Camera(-1.0, 1.0, 1.0, 1.0, 4, 4)


def test_object_pipeline_names_no_guidance_backend():
    """The object pipeline builds guidance through the registry only; a backend that wants the known target
    declares it (``wants_known_target``), so no backend name is special-cased."""
    src = (PKG / "pipelines" / "object" / "pipeline.py").read_text()
    tree = ast.parse(src)
    from scenescape.backends.base import GUIDANCE

    known = set(GUIDANCE.names())
    compared = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and any(isinstance(c, ast.Constant) and c.value in known for c in [n.left, *n.comparators])]
    assert not compared, compared  # e.g. `if gcfg.name == "analytic":`
