"""Typed configs: conversion, unknown keys, overrides, YAML round trip; the registry."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from scenescape.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    save_yaml,
    to_dict,
)
from scenescape.registry import Registry, load_object


@dataclass
class Inner:
    steps: int = 10
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    seed: int = 0
    name: str = "x"
    flag: bool = False
    sizes: tuple[int, int] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    opt: float | None = None


def test_from_dict_converts_types_and_nests():
    cfg = from_dict(Outer, {"seed": "3", "flag": "true", "sizes": [4, 5], "inner": {"lr": "1e-2", "mode": "b"}})
    assert cfg.seed == 3 and cfg.flag is True and cfg.sizes == (4, 5)
    assert cfg.inner.lr == pytest.approx(0.01) and cfg.inner.mode == "b"
    assert cfg.opt is None


def test_unknown_key_names_key_and_nearest():
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, {"inner": {"stepz": 3}})
    assert "inner.stepz" in str(e.value) and "steps" in str(e.value)


@pytest.mark.parametrize("bad", [{"seed": "three"}, {"flag": "maybe"}, {"inner": {"mode": "c"}}, {"sizes": [1]}])
def test_bad_values_are_errors(bad):
    with pytest.raises(ConfigError):
        from_dict(Outer, bad)


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = apply_overrides(Outer(), ["seed=7", "inner.steps=30", "opt=0.5", "sizes=[8, 9]"])
    assert (cfg.seed, cfg.inner.steps, cfg.opt, cfg.sizes) == (7, 30, 0.5, (8, 9))
    p = tmp_path / "c.yaml"
    save_yaml(cfg, p)
    back = load_config(Outer, p)
    assert to_dict(back) == to_dict(cfg)
    back2 = load_config(Outer, p, ["inner.mode=b"])
    assert back2.inner.mode == "b" and back2.seed == 7
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Outer(), ["seed"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_registry_names_lazy_and_module_class():
    reg = Registry("thing")

    @reg.register("alpha")
    class Alpha:
        pass

    reg.register_lazy("ordered", "collections:OrderedDict")
    assert reg.get("alpha") is Alpha
    import collections

    assert reg.get("ordered") is collections.OrderedDict
    with pytest.raises(ConfigError, match="plugin"):  # a module:Class name needs the user's consent
        reg.get("collections:Counter")
    from scenescape.registry import plugins_allowed

    with plugins_allowed("collections"):
        assert reg.get("collections:Counter") is collections.Counter
    with pytest.raises(ConfigError, match="alpah|alpha"):
        reg.get("alpah")
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        load_object("no_such_module_xyz:Thing")


def test_backend_config_validates_options():
    from scenescape.backends import BackendConfig, build_backend

    reg = Registry("demo")

    @reg.register("c")
    class WithConfig:
        @dataclass
        class Config:
            k: int = 1

        def __init__(self, cfg):
            self.cfg = cfg

    assert build_backend(reg, "c", {"k": "4"}).cfg.k == 4
    with pytest.raises(ConfigError, match="kk"):
        BackendConfig("c", {"kk": 1}).build(reg)
    with pytest.raises(ConfigError, match="no demo backend"):
        BackendConfig().build(reg)


def test_switching_backend_name_drops_old_options():
    from scenescape.config import merge_dicts, overrides_to_dict

    base = {"inpainter": {"name": "opencv", "options": {"method": "telea"}}, "seed": 1}
    out = merge_dicts(base, overrides_to_dict(["inpainter.name=diffusers"]))
    assert out["inpainter"] == {"name": "diffusers"}
    out = merge_dicts(base, overrides_to_dict(["inpainter.name=diffusers", "inpainter.options.steps=3"]))
    assert out["inpainter"] == {"name": "diffusers", "options": {"steps": 3}}
    out = merge_dicts(base, overrides_to_dict(["inpainter.options.radius=5"]))
    assert out["inpainter"]["options"] == {"method": "telea", "radius": 5}
