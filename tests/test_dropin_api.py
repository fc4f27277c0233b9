"""segment_anything's registry, modeling classes and predictor state under basam; what basam does not
provide says so in one line; bad generator and prompt arguments are refused where they enter."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import basam
import basam.modeling
from basam.config import MODEL_CONFIGS
from official import official_package, official_sam, randomize

TINY = MODEL_CONFIGS["tiny"]
SAMPLE = basam.formats.checkpoint.ASSETS / "sample.jpg"


@pytest.fixture(scope="module")
def official():
    return official_package()


@pytest.fixture(scope="module")
def pair(one_thread):
    theirs = randomize(official_sam(TINY), seed=3)
    ours = basam.Sam(TINY).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def test_registry_keys_build_the_official_sizes(official, monkeypatch):
    """Every official key means here what it means there: the builder's sizes, read from the
    official _build_sam's arguments."""
    seen = {}
    monkeypatch.setattr(official.build_sam, "_build_sam", lambda **kw: seen.setdefault("args", kw))
    assert set(official.sam_model_registry) <= set(basam.sam_model_registry)
    for key, build in official.sam_model_registry.items():
        seen.clear()
        build()
        cfg = MODEL_CONFIGS[basam.sam_model_registry[key].model_type]
        args = seen["args"]
        assert (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.encoder_num_heads) == (
            args["encoder_embed_dim"],
            args["encoder_depth"],
            args["encoder_num_heads"],
        )
        assert list(cfg.encoder_global_attn_indexes) == list(args["encoder_global_attn_indexes"])
    assert basam.sam_model_registry["default"] is basam.build_sam is basam.build_sam_vit_h
    assert basam.sam_model_registry["vit_t"].model_type == "vit_t"
    assert basam.sam_model_registry["basam_default"].model_type == "default"
    with pytest.raises(KeyError, match="'vit_b'"):
        basam.sam_model_registry["vit_x"]


@pytest.mark.slow
def test_registry_loads_an_official_vit_b_checkpoint(official, tmp_path):
    path = tmp_path / "sam_vit_b_random.pth"
    torch.manual_seed(0)
    theirs = official.sam_model_registry["vit_b"]()
    torch.save(theirs.state_dict(), path)
    sam = basam.sam_model_registry["vit_b"](checkpoint=path)
    assert isinstance(sam, basam.Sam) and not sam.training and sam.image_encoder.img_size == 1024
    assert sam.device == torch.device("cpu") and sam.to("cpu") is sam
    ours = sam.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.state_dict().items())
    del theirs, sam
    tuned = basam.sam_model_registry["vit_b"](checkpoint=path, attn="basam", windows="scaled")
    assert tuned.attn_cfg.preset == "basam" and tuned.attn_cfg.windows == "scaled"


def test_model_methods_match_the_official_ones(pair):
    theirs, ours = pair
    assert ours.image_encoder.img_size == theirs.image_encoder.img_size == TINY.img_size
    assert ours.mask_threshold == theirs.mask_threshold and ours.image_format == theirs.image_format
    x = torch.rand(2, 3, 180, 256) * 255
    assert torch.equal(ours.preprocess(x), theirs.preprocess(x))
    with torch.no_grad():
        emb_a, emb_b = ours.image_encoder(theirs.preprocess(x)), theirs.image_encoder(theirs.preprocess(x))
        assert (emb_a - emb_b).abs().max() <= 1e-4
        pe = ours.prompt_encoder
        assert pe.image_embedding_size == theirs.prompt_encoder.image_embedding_size
        assert pe.input_image_size == tuple(theirs.prompt_encoder.input_image_size)
        assert pe.mask_input_size == theirs.prompt_encoder.mask_input_size
        assert torch.equal(pe.get_dense_pe(), theirs.prompt_encoder.get_dense_pe())
        points = (torch.tensor([[[30.0, 40.0], [100.0, 20.0]]]), torch.tensor([[1, 0]]))
        boxes, masks = torch.tensor([[10.0, 20.0, 200.0, 150.0]]), torch.randn(1, 1, 64, 64)
        for prompts in (
            dict(points=points, boxes=None, masks=None),
            dict(points=None, boxes=boxes, masks=masks),
            dict(points=None, boxes=None, masks=None),
        ):
            (s_a, d_a), (s_b, d_b) = pe(**prompts), theirs.prompt_encoder(**prompts)
            assert (
                s_a.shape == s_b.shape and torch.allclose(s_a, s_b, atol=1e-5) and torch.allclose(d_a, d_b, atol=1e-5)
            )
            args = dict(
                image_embeddings=emb_b[:1],
                image_pe=theirs.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=s_b,
                dense_prompt_embeddings=d_b,
                multimask_output=True,
            )
            (m_a, i_a), (m_b, i_b) = ours.mask_decoder(**args), theirs.mask_decoder(**args)
            assert (m_a - m_b).abs().max() <= 1e-4 and (i_a - i_b).abs().max() <= 1e-5
            big_a = ours.postprocess_masks(m_a, (180, 256), (360, 512))
            big_b = theirs.postprocess_masks(m_b, (180, 256), (360, 512))
            assert big_a.shape == big_b.shape and (big_a - big_b).abs().max() <= 1e-4


def test_modeling_classes_take_the_official_arguments(official):
    """The official constructors' arguments give the same parameters (names and shapes); the
    window helpers partition and restore as the official ones."""
    kwargs = dict(
        depth=3,
        embed_dim=48,
        img_size=128,
        mlp_ratio=2,
        norm_layer=nn.LayerNorm,
        num_heads=3,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=[2],
        window_size=5,
        out_chans=24,
    )
    ours, theirs = basam.modeling.ImageEncoderViT(**kwargs), official.modeling.ImageEncoderViT(**kwargs)
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    ours.load_state_dict(randomize(theirs, seed=1).state_dict())
    assert ours.blocks[0].norm1.eps == theirs.blocks[0].norm1.eps == 1e-5
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-4
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    grid = torch.randn(2, 9, 7, 4)
    (a, pad_a), (b, pad_b) = basam.modeling.window_partition(grid, 4), window_partition(grid, 4)
    assert pad_a == pad_b and torch.equal(a, b)
    assert torch.equal(basam.modeling.window_unpartition(a, 4, pad_a, (9, 7)), window_unpartition(b, 4, pad_b, (9, 7)))


class LoRA(nn.Module):
    """A low-rank update beside a frozen linear layer: base(x) + B(A(x)), B and A seeded."""

    def __init__(self, base: nn.Linear, rank: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.base = base
        self.a = nn.Parameter(torch.randn(rank, base.in_features, generator=g) * 0.1)
        self.b = nn.Parameter(torch.randn(base.out_features, rank, generator=g) * 0.1)

    def forward(self, x):
        return self.base(x) + x @ self.a.T @ self.b.T


def lora_targets(model):
    return sorted(
        (name, m.in_features, m.out_features)
        for name, m in model.image_encoder.named_modules()
        if isinstance(m, nn.Linear) and name.endswith(("attn.qkv", "mlp.lin1", "mlp.lin2"))
    )


def patch(model):
    for i, (name, _, _) in enumerate(lora_targets(model)):
        parent, leaf = name.rsplit(".", 1)
        module = model.image_encoder.get_submodule(parent)
        setattr(module, leaf, LoRA(getattr(module, leaf), rank=2, seed=i))


def test_lora_patching_finds_the_same_layers(one_thread):
    theirs = randomize(official_sam(TINY), seed=4)
    ours = basam.Sam(TINY).eval()
    ours.load_state_dict(theirs.state_dict())
    assert lora_targets(ours) == lora_targets(theirs) and len(lora_targets(ours)) == 3 * TINY.encoder_depth
    assert ours.image_encoder.blocks[1].attn.qkv.in_features == TINY.encoder_embed_dim
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        before = ours.image_encoder(x)
        patch(ours), patch(theirs)
        after_ours, after_theirs = ours.image_encoder(x), theirs.image_encoder(x)
    assert (after_ours - after_theirs).abs().max() <= 1e-4
    assert (after_ours - before).abs().max() > 1e-2  # the patched layers are the ones the encoder runs


def test_hand_written_predictor_state_replaces_the_previous_image(pair):
    _, ours = pair
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (120, 200, 3), dtype=np.uint8) for _ in range(2))
    second = second[:90]
    reference = basam.SamPredictor(ours)
    reference.set_image(second)
    expected = reference.predict(point_coords=np.array([[50, 40]]), point_labels=np.array([1]))
    predictor = basam.SamPredictor(ours)
    predictor.set_image(first)
    predictor.features = reference.features.clone()
    predictor.original_size, predictor.input_size = second.shape[:2], torch.Size(reference.input_size)
    predictor.is_image_set = True
    got = predictor.predict(point_coords=np.array([[50, 40]]), point_labels=np.array([1]))
    assert got[0].shape == (3, 90, 200)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    predictor.reset_image()
    predictor.is_image_set = True
    with pytest.raises(RuntimeError, match="features, original_size, input_size not set"):
        predictor.predict()


def test_what_basam_lacks_says_so_in_one_line(pair):
    with pytest.raises(ImportError, match="rel_pos_table"):
        from basam.modeling.image_encoder import get_rel_pos  # noqa: F401
    with pytest.raises(ImportError, match="decomposed_rel_pos"):
        from basam.modeling.image_encoder import add_decomposed_rel_pos  # noqa: F401
    with pytest.raises(ValueError, match="use_rel_pos=True"):
        basam.modeling.ImageEncoderViT(depth=2, embed_dim=32, num_heads=2)  # the official default: no rel-pos
    with pytest.raises(ValueError, match="pixel_mean"):
        basam.Sam(
            *[getattr(pair[1], n) for n in ("image_encoder", "prompt_encoder", "mask_decoder")],
            pixel_mean=[0.0, 0.0, 0.0],
        )
    with pytest.raises(TypeError, match="by keyword"):
        basam.modeling.PromptEncoder(32, (16, 16), (256, 256), 4)
    with pytest.raises(AttributeError, match="transform.sizes"):
        basam.SamPredictor(pair[1], resolution="auto").transform.target_length  # noqa: B018 (the access itself raises)
    assert basam.SamPredictor(pair[1]).transform.target_length == TINY.img_size


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("pred_iou_thresh", float("nan"), "finite"),
        ("stability_score_thresh", float("nan"), "finite"),
        ("stability_score_thresh", 1.5, r"\[0, 1\]"),
        ("box_nms_thresh", 7, r"\[0, 1\]"),
        ("crop_nms_thresh", -0.1, r"\[0, 1\]"),
        ("crop_overlap_ratio", 1.0, r"\[0, 1\)"),
        ("stability_score_offset", -1.0, "∞"),
        ("min_mask_region_area", -5, "∞"),
        ("crop_n_layers", -1, "≥ 0"),
        ("crop_n_layers", 1.5, "integer"),
        ("points_per_batch", 0, "≥ 1"),
        ("crop_n_points_downscale_factor", 0, "≥ 1"),
    ],
)
def test_generator_options_are_checked(pair, option, value, message):
    with pytest.raises(ValueError, match=message) as e:
        basam.SamAutomaticMaskGenerator(pair[1], **{option: value})
    assert option in str(e.value) and "\n" not in str(e.value)


def test_generator_crop_layers_need_points(pair):
    with pytest.raises(ValueError, match="crop layer 3 would have no points"):
        basam.SamAutomaticMaskGenerator(pair[1], points_per_side=4, crop_n_layers=3, crop_n_points_downscale_factor=2)
    with pytest.raises(ValueError, match=r"point_grids\[0\]"):
        basam.SamAutomaticMaskGenerator(pair[1], points_per_side=None, point_grids=[np.array([[0.5, 1.5]])])
    generator = basam.SamAutomaticMaskGenerator(
        pair[1], points_per_side=4, crop_n_layers=2, crop_n_points_downscale_factor=2, box_nms_thresh=1.0
    )
    assert [len(g) for g in generator.point_grids] == [16, 4, 1]


def test_prompt_shapes_are_checked(pair):
    predictor = basam.SamPredictor(pair[1])
    predictor.set_image(np.zeros((100, 120, 3), np.uint8))
    with pytest.raises(ValueError, match=r"boxes of shape \(3, 5\): expected \(B, 4\)"):
        predictor.predict_torch(None, None, boxes=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"mask_input of shape \(2, 64, 64\)"):
        predictor.predict_torch(None, None, boxes=torch.tensor([[0.0, 0, 10, 10]]), mask_input=torch.zeros(2, 64, 64))
    with pytest.raises(ValueError, match=r"box of shape \(3, 5\)"):
        predictor.predict(box=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"point_coords of shape \(3,\)"):
        predictor.predict(point_coords=np.zeros(3), point_labels=np.ones(3))
    # the shapes segment_anything passes itself are accepted: (B, 1, 4) boxes, (1, h, w) masks
    masks, scores, low_res = predictor.predict_torch(None, None, boxes=torch.tensor([[[0.0, 0, 60, 50]]]))
    assert masks.shape == (1, 3, 100, 120)
    predictor.predict(box=np.array([0, 0, 60, 50]), mask_input=low_res[0, :1].numpy(), multimask_output=False)


def test_cli_amg_refuses_bad_options_in_one_line(tmp_path):
    for flags in (["--crop-n-layers", "-1"],):  # a traceback before these checks; the others are tested above
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "basam.cli",
                "amg",
                str(SAMPLE),
                "--out",
                str(tmp_path / "o"),
                "--model",
                "tiny",
                *flags,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and flags[0][2:].replace("-", "_") in r.stderr, r.stderr


def test_the_official_module_paths_exist():
    from basam.automatic_mask_generator import SamAutomaticMaskGenerator
    from basam.build_sam import build_sam_vit_b, sam_model_registry
    from basam.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer  # noqa: F401
    from basam.predictor import SamPredictor
    from basam.utils.amg import MaskData  # noqa: F401
    from basam.utils.onnx import SamOnnxModel  # noqa: F401
    from basam.utils.transforms import ResizeLongestSide  # noqa: F401

    assert SamPredictor is basam.SamPredictor and SamAutomaticMaskGenerator is basam.SamAutomaticMaskGenerator
    assert sam_model_registry["vit_b"] is build_sam_vit_b and Sam is basam.Sam


def test_registry_has_segment_anything_hq_keys():
    from official_hq import official_hq

    assert set(official_hq().sam_model_registry) <= set(basam.sam_model_registry)
    assert basam.sam_model_registry["vit_tiny"].model_type == "hq_vit_tiny"
    tiny_hq = basam.sam_model_registry["hq_vit_tiny"]()
    assert tiny_hq.is_hq and isinstance(tiny_hq, basam.Sam)
