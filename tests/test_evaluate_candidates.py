"""Inpainting candidates (`inpainter.candidates: K`) scored by a tiny random CLIP and the seam; CLIP scores
through the same from_pretrained path users take."""

import numpy as np
import pytest

from scenescape.backends.base import seed_for_frame
from scenescape.config import ConfigError
from scenescape.evaluation import OracleDepth, default_camera, make_world, suggest_trajectory
from scenescape.pipelines import SceneConfig, ScenePipeline
from scenescape.pipelines.scene.candidates import CANDIDATE_STREAM, border_ratio
from scenescape.pipelines.scene.config import InpainterConfig
from scenescape.trajectories import build_trajectory

pytest.importorskip("transformers")

SIZE, FRAMES, K = 64, 5, 3
PROMPT = "a quiet room with pillars"


class SeededInpainter:
    """The world's true colours plus seeded noise whose strength depends on the seed: candidates differ."""

    def __init__(self, world):
        self.world = world
        self.outputs = {}

    def inpaint(self, image, mask, camera, prompt="", seed=None, negative_prompt=None):
        gt, _ = self.world.render(camera)
        rng = np.random.default_rng(seed)
        amp = 0.02 + 0.3 * rng.random()
        noisy = np.clip(gt.numpy() + amp * rng.standard_normal(gt.shape).astype(np.float32), 0, 1)
        out = np.where(np.asarray(mask)[..., None], noisy, image).astype(np.float32)
        self.outputs[(camera.center.tolist().__repr__(), seed)] = out
        return out


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from scenescape.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def _setup(clip, candidates=K):
    w = make_world("room")
    cam0 = default_camera(w, SIZE, SIZE, 500.0 * SIZE / 512)
    cams = build_trajectory(suggest_trajectory(w, "forward_yaw", FRAMES), cam0, FRAMES)
    img0, dep0 = w.render(cam0)
    cfg = SceneConfig(width=SIZE, height=SIZE, focal=cam0.fx, frames=FRAMES, prompt=PROMPT, seed=11,
                      inpainter=InpainterConfig("oracle", candidates=candidates, clip=clip))
    inp = SeededInpainter(w)
    pipe = ScenePipeline(depth=OracleDepth(world=w), inpainter=inp, config=cfg)
    return pipe, inp, cams, img0.numpy(), dep0.numpy()


def test_tiny_clip_loads_like_a_hub_model_and_scores_independently(clip_dir):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from scenescape.backends.clip import ClipScorer

    sc = ClipScorer(clip_dir, device="cpu")
    rng = np.random.default_rng(0)
    imgs = [rng.random((40, 48, 3)).astype(np.float32) for _ in range(3)]
    ours = sc.scores(imgs, PROMPT)
    # independent: transformers' own CLIPProcessor + CLIPModel forward (logits = scale * cos)
    model = CLIPModel.from_pretrained(clip_dir, use_safetensors=True).eval()
    proc = CLIPProcessor.from_pretrained(clip_dir)
    u8 = [np.clip(im * 255 + 0.5, 0, 255).astype(np.uint8) for im in imgs]
    inputs = proc(text=[PROMPT], images=u8, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    ref = (out.logits_per_image[:, 0] / model.logit_scale.exp()).detach().numpy() * 100
    assert np.allclose(ours, ref, atol=1e-3), (ours, ref)
    assert len(set(np.round(ours, 4))) == 3  # random images really score differently
    from scenescape.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no-such-clip"):
        ClipScorer(str(clip_dir) + "/no-such-clip")


def test_best_candidate_is_kept_and_its_scores_recorded(clip_dir, tmp_path):
    from scenescape.backends.clip import ClipScorer
    from scenescape.io import read_json

    pipe, inp, cams, img0, dep0 = _setup(clip_dir)
    res = pipe.run(cameras=cams, init_image=img0, init_depth=dep0, out_dir=tmp_path / "run", progress=False)
    man = read_json(tmp_path / "run" / "manifest.json")["candidates"]
    assert [c["frame"] for c in man] == list(range(1, FRAMES))
    clip = ClipScorer(clip_dir, device="cpu")
    picked_other = 0
    for c in man:
        i, cands = c["frame"], c["candidates"]
        assert len(cands) == K
        assert [x["seed"] for x in cands] == [seed_for_frame(11, i, 0)] + [
            seed_for_frame(11, i, CANDIDATE_STREAM + j) for j in (1, 2)]
        scores = [x["score"] for x in cands]
        assert c["chosen"] == int(np.argmax(scores))
        picked_other += c["chosen"] != 0
        # the kept frame is the chosen candidate: its inpainted pixels (beyond the feather) are that output
        mask = res.masks[i]
        out = inp.outputs[(cams[i].center.tolist().__repr__(), cands[c["chosen"]]["seed"])]
        import cv2

        inner = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert inner.any()
        assert np.allclose(res.frames[i][inner], out[inner], atol=1e-6)
        # and the recorded scores are what CLIP and the seam measure say of the kept frame
        cos = float(clip.image_embeddings([res.frames[i]])[0] @ clip.text_embedding(PROMPT))
        assert abs(cos - cands[c["chosen"]]["clip"]) < 1e-4
        seam, _ = border_ratio(res.frames[i], mask)
        assert seam > 0 and np.isfinite(seam)
    assert picked_other > 0  # the choice is not always the ordinary seed's inpainting


@pytest.mark.slow
def test_resumed_run_picks_the_same_candidates(clip_dir, tmp_path):
    from scenescape.io import read_json

    pipe, _, cams, img0, dep0 = _setup(clip_dir)
    pipe.run(cameras=cams, init_image=img0, init_depth=dep0, out_dir=tmp_path / "full", progress=False)

    class Stop(Exception):
        pass

    def stop_at_2(i, s):
        if i == 2:
            raise Stop

    pipe2, _, _, _, _ = _setup(clip_dir)
    with pytest.raises(Stop):
        pipe2.run(cameras=cams, init_image=img0, init_depth=dep0, out_dir=tmp_path / "cut", progress=False,
                  on_frame=stop_at_2)
    pipe3, _, _, _, _ = _setup(clip_dir)
    pipe3.run(out_dir=tmp_path / "cut", resume=True, progress=False)
    a = read_json(tmp_path / "full" / "manifest.json")["candidates"]
    b = read_json(tmp_path / "cut" / "manifest.json")["candidates"]
    assert [(c["frame"], c["chosen"]) for c in a] == [(c["frame"], c["chosen"]) for c in b]
    for ca, cb in zip(a, b):
        for xa, xb in zip(ca["candidates"], cb["candidates"]):
            assert xa["seed"] == xb["seed"] and abs(xa["score"] - xb["score"]) < 1e-5
    fa = sorted((tmp_path / "full" / "frames").iterdir())
    fb = sorted((tmp_path / "cut" / "frames").iterdir())
    assert [p.read_bytes() for p in fa] == [p.read_bytes() for p in fb]


def test_candidates_config_is_checked():
    with pytest.raises(ConfigError, match="candidates"):
        InpainterConfig("opencv", candidates=0)
    with pytest.raises(ConfigError, match="choose by"):
        InpainterConfig("opencv", candidates=3, seam_weight=0.0)
    from scenescape.config import apply_overrides

    cfg = apply_overrides(SceneConfig(), ["inpainter.candidates=3", "inpainter.name=oracle"])
    assert cfg.inpainter.candidates == 3 and cfg.inpainter.name == "oracle"
    with pytest.raises(ConfigError, match="candidats|candidates"):
        apply_overrides(SceneConfig(), ["inpainter.candidats=3"])
