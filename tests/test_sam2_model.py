"""The SAM 2 image model against the official sam2 code (random weights, saved as the release saves
them): strict loading, backbone features and image embedding, the decoder; any H×W; BA-SAM presets."""

import pytest
import torch

import basam
from basam.config import SAM2_CONFIGS
from official_sam2 import TINY_OVERRIDES, official_sam2, release_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> bool:
    """Max abs difference within tol × the reference's scale (random weights give features up to ~50)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return (ours - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())


def load_release(official, tmp_path, model_type, **kwargs):
    path = tmp_path / "release.pt"
    torch.save(release_state_dict(official), path)
    return basam.load_model(model_type, checkpoint=path, **kwargs)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    official = official_sam2(overrides=TINY_OVERRIDES)
    return official, load_release(official, tmp_path_factory.mktemp("tiny"), "sam2_tiny")


def official_features(official, x):
    with torch.no_grad():
        out = official.forward_image(x)
    stride4, stride8 = out["backbone_fpn"][:2]  # already through conv_s0 / conv_s1
    return out["vision_features"] + official.no_mem_embed.view(1, -1, 1, 1), [stride4, stride8], out


@pytest.mark.parametrize(
    "config, model_type, side",
    [
        # hiera_t at 1024 px is compared through the image predictor (test_sam2_predictor.py)
        ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_t", 512),
        # b+ (two heads, 14×14 background embedding, 14-token windows): the official trunk runs at any
        # size, so a smaller input keeps the test short.
        ("configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_b+", 256),
    ],
)
def test_released_sizes_load_strictly_and_match(config, model_type, side, tmp_path, capfd):
    official = official_sam2(config)
    ours = load_release(official, tmp_path, model_type)
    assert "video-only" in capfd.readouterr().err
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # each trunk runs once: the rest of forward_image / encode on its maps
        ref_maps = official.image_encoder.trunk(x)
        ref_levels = official.image_encoder.neck(ref_maps)[0][: -official.image_encoder.scalp]
        decoder = official.sam_mask_decoder
        high_res_ref = [decoder.conv_s0(ref_levels[0]), decoder.conv_s1(ref_levels[1])]
        embed_ref = ref_levels[2] + official.no_mem_embed.view(1, -1, 1, 1)
        trunk_maps = ours.image_encoder.trunk(x)
        levels = ours.image_encoder.neck(trunk_maps)[: -ours.image_encoder.scalp]
        high_res = ours.sam_mask_decoder.project_high_res(levels[:2])
        embed = levels[2] + ours.no_mem_embed.view(1, -1, 1, 1)
    for a, b in zip(trunk_maps, ref_maps):
        assert close(a, b)
    assert close(embed, embed_ref)
    for a, b in zip(high_res, high_res_ref):
        assert close(a, b)
    assert embed.shape == (1, 256, side // 16, side // 16)


def test_video_only_keys_named_and_others_refused(tiny_pair, tmp_path, capfd):
    official, _ = tiny_pair
    state = release_state_dict(official)
    del state["model"]["sam_mask_decoder.conv_s0.weight"]
    state["model"]["image_encoder.trunk.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(basam.CheckpointError, match="1 missing: sam_mask_decoder.conv_s0.weight; 1 unexpected"):
        basam.load_model("sam2_tiny", checkpoint=tmp_path / "broken.pt")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaving out 160 video-only tensors" in err[0]
    with pytest.raises(basam.CheckpointError, match="looks like sam2.1_hiera_t"):
        basam.load_model("vit_b", checkpoint=_saved(official_sam2(), tmp_path / "t.pt"))


def _saved(official, path):
    torch.save(release_state_dict(official), path)
    return path


@pytest.mark.parametrize("hw", [(256, 256), (256, 384), (512, 320)])
def test_any_size_equals_official_trunk(tiny_pair, hw):
    """The official model runs at other sizes too (only its predictor is tied to 1024); with plain
    attention and fixed windows ours gives its features, square or not."""
    official, ours = tiny_pair
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(2))
    embed_ref, high_res_ref, _ = official_features(official, x)
    with torch.no_grad():
        embed, high_res = ours.encode(x)
    assert embed.shape == (1, 32, hw[0] // 16, hw[1] // 16)
    assert [tuple(f.shape[-2:]) for f in high_res] == [(hw[0] // 4, hw[1] // 4), (hw[0] // 8, hw[1] // 8)]
    assert close(embed, embed_ref) and all(close(a, b) for a, b in zip(high_res, high_res_ref))


@pytest.mark.parametrize("hw, windows", [((768, 1024), "scaled"), ((2048, 2048), "fixed"), ((480, 1344), "scaled")])
def test_shapes_at_large_and_non_square_sizes(hw, windows):
    model = basam.load_model("sam2_tiny", attn="basam", windows=windows)
    with torch.no_grad():
        embed, (s0, s1) = model.encode(torch.randn(1, 3, *hw))
        low_res, iou = model.decode(
            embed,
            hw,
            points=(torch.tensor([[[100.0, 200.0]]]), torch.tensor([[1]])),
            multimask_output=True,
            high_res_features=[s0, s1],
        )
    h, w = hw
    assert embed.shape == (1, 32, h // 16, w // 16) and s0.shape == (1, 4, h // 4, w // 4)
    assert s1.shape == (1, 8, h // 8, w // 8)
    assert low_res.shape == (1, 3, h // 4, w // 4) and iou.shape == (1, 3)
    assert torch.isfinite(low_res).all() and ((iou >= 0) & (iou <= 1)).all()  # the IoU head ends in a sigmoid


def test_input_not_multiple_of_32_is_refused():
    model = basam.load_model("sam2_tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        model.encode(torch.randn(1, 3, 256, 240))


@pytest.mark.parametrize("preset", ["nsf", "bm", "basam"])
def test_presets_equal_sam_at_training_size_and_act_beyond(tiny_pair, preset):
    official, plain = tiny_pair
    state = plain.state_dict()
    outputs = {}
    for name, windows in ((preset, "fixed"), (preset, "scaled"), ("sam", "fixed")):
        model = basam.load_model("sam2_tiny", attn=name, windows=windows)
        model.load_state_dict(state)
        with torch.no_grad():
            outputs[name, windows] = [
                model.encode(torch.randn(1, 3, side, side, generator=g(4)))[0] for side in (256, 512)
            ]
    at_train = [outputs[k][0] for k in outputs]
    beyond = [outputs[k][1] for k in outputs]
    assert all(torch.allclose(a, at_train[-1], atol=1e-5) for a in at_train)
    assert all((a - beyond[-1]).abs().max() > 1e-3 for a in beyond[:-1])


def test_chunked_global_attention_is_the_same(tiny_pair):
    """The global block's queries in chunks of a few rows (as large inputs need) give the same features."""
    _, ours = tiny_pair
    x = torch.randn(1, 3, 512, 512, generator=g(6))
    model = basam.load_model("sam2_tiny", attn="basam")
    model.load_state_dict(ours.state_dict())
    with torch.no_grad():
        whole = model.encode(x)[0]
        mode = model.image_encoder.trunk.blocks[3].attn.mode  # the global block: 32×32 tokens, 4 heads
        mode.chunk_bytes = 20 * 4 * 1024 * 4  # 20 query rows per chunk
        chunked = model.encode(x)[0]
    assert torch.allclose(chunked, whole, atol=1e-5)


def official_decode(official, embed, high_res, points=None, box=None, mask=None, multimask=True):
    """The official image predictor's decoder call (boxes as points labelled 2, 3)."""
    if box is not None:
        corners, labels = box.reshape(-1, 2, 2), torch.tensor([[2, 3]]).repeat(box.shape[0], 1)
        points = (
            (corners, labels)
            if points is None
            else (torch.cat([corners, points[0]], 1), torch.cat([labels, points[1]], 1))
        )
    with torch.no_grad():
        sparse, dense = official.sam_prompt_encoder(points=points, boxes=None, masks=mask)
        masks, iou, _, _ = official.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=official.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=points is not None and points[0].shape[0] > 1,
            high_res_features=high_res,
        )
    return masks, iou


@pytest.mark.parametrize("prompt", ["point", "points_batch", "box", "box_and_points", "mask", "none"])
@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_equals_official(tiny_pair, prompt, multimask):
    official, ours = tiny_pair
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 256, 256, generator=g)
    embed, high_res, _ = official_features(official, x)
    points = box = mask = None
    if prompt in ("point", "box_and_points"):
        points = (torch.tensor([[[60.0, 100.0], [200.0, 30.0]]]), torch.tensor([[1, 0]]))
    if prompt == "points_batch":
        points = (torch.rand(3, 2, 2, generator=g) * 256, torch.tensor([[1, 1], [1, 0], [0, 1]]))
    if prompt in ("box", "box_and_points"):
        box = torch.tensor([[20.0, 30.0, 180.0, 220.0]])
    if prompt == "mask":
        mask = torch.randn(1, 1, 64, 64, generator=g) * 4
    ref_masks, ref_iou = official_decode(official, embed, high_res, points, box, mask, multimask)
    with torch.no_grad():
        masks, iou = ours.decode(embed, (256, 256), points, box, mask, multimask, high_res)
    assert close(masks, ref_masks) and close(iou, ref_iou)


def test_single_mask_falls_back_to_best_multimask_when_unstable():
    decoder = basam.load_model("sam2_tiny").sam_mask_decoder
    masks = torch.full((2, 4, 8, 8), -5.0)
    masks[0, 0] = 5.0  # stable single mask
    masks[1, 0] = 0.01  # between −delta and +delta everywhere: unstable
    masks[:, 2] = 3.0
    iou = torch.tensor([[0.5, 0.1, 0.9, 0.2], [0.5, 0.1, 0.9, 0.2]])
    out_masks, out_iou = decoder.stable_single_mask(masks, iou)
    assert torch.equal(out_masks[0, 0], masks[0, 0]) and torch.equal(out_masks[1, 0], masks[1, 2])
    assert out_iou.tolist() == [[0.5], [pytest.approx(0.9)]]


def test_official_preset_refused():
    with pytest.raises(ValueError, match="Hiera has no rel-pos"):
        basam.load_model("sam2_tiny", attn="official")


def test_config_names():
    for name in ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l", "sam2_hiera_l"):
        assert name in SAM2_CONFIGS
    model = basam.load_model("configs/sam2.1/sam2.1_hiera_t.yaml")
    assert model.cfg.name == "sam2.1_hiera_t"
    assert [len(model.image_encoder.trunk.blocks), model.image_encoder.trunk.channel_list] == [12, [768, 384, 192, 96]]
