"""Scaled windows (`AttentionConfig.windows`) and the `auto` resolution policy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import basam
from basam.config import MODEL_CONFIGS, AttentionConfig
from basam.inference.transforms import model_input_size
from basam.modeling.attention import BlockAttentionMode, grid_diameter, scaled_window
from official import randomize

TINY = MODEL_CONFIGS["tiny"]  # 256 px, 4-token windows, global blocks 1 and 3
VIT_B = MODEL_CONFIGS["vit_b"]  # 1024 px, 14-token windows


@pytest.mark.parametrize(
    "hw, window",
    [
        ((512, 512), 7),
        ((1024, 1024), 14),
        ((1536, 1536), 21),
        ((2048, 2048), 28),
        ((768, 768), 11),  # 14·48/64 = 10.5: half up, not half to even
        ((1024, 1536), 21),
        ((2048, 640), 28),  # non-square native inputs: the long side counts
        ((64, 64), 1),  # never below one token
    ],
)
def test_vit_b_scaled_window_sizes(hw, window):
    grid = (hw[0] // 16, hw[1] // 16)
    assert scaled_window(VIT_B.window_size, grid, VIT_B.train_grid) == window


def tiny_model(attn=None):
    model = basam.Sam(TINY, attn or AttentionConfig()).eval()
    randomize(model, seed=3)
    return model


def test_scaled_windows_equal_a_model_built_with_the_grown_window():
    """At 512 px the tiny model's 4-token windows become 8 tokens: the same as a model whose
    windows are 8 tokens, with the trained rel-pos tables resized to 15 rows."""
    model = tiny_model()
    grown_cfg = TINY.__class__(**{**TINY.to_dict(), "window_size": 8})
    grown = basam.Sam(grown_cfg).eval()
    state = model.state_dict()
    for i, block in enumerate(model.image_encoder.blocks):
        if block.window_size:
            for axis in ("h", "w"):
                key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
                state[key] = F.interpolate(state[key].T[None], size=15, mode="linear")[0].T  # 7 → 15 rows
    grown.load_state_dict(state)
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scaled = model.image_encoder(x, windows="scaled")
        fixed = model.image_encoder(x)
        reference = grown.image_encoder(x)
    assert model.image_encoder.window_for((32, 32), "scaled") == 8
    assert (scaled - reference).abs().max() <= 1e-5
    assert (scaled - fixed).abs().max() > 1e-3  # the windows really changed


def test_scaled_equals_fixed_at_the_training_size_for_every_preset():
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    for preset in ("sam", "basam"):
        model = tiny_model(AttentionConfig.from_preset(preset, bm_blocks="all"))
        with torch.no_grad():
            assert torch.equal(model.image_encoder(x, windows="scaled"), model.image_encoder(x, windows="fixed"))


def test_config_windows_is_the_default_of_a_call_and_a_call_changes_nothing():
    x = torch.randn(1, 3, 384, 256, generator=torch.Generator().manual_seed(2))  # non-square: long side 24 tokens
    model = tiny_model(AttentionConfig(windows="scaled"))
    assert model.image_encoder.window_for((24, 16)) == 6
    with torch.no_grad():
        by_config = model.image_encoder(x)
        model.set_attention(AttentionConfig())
        assert torch.equal(model.image_encoder(x, windows="scaled"), by_config)
        fixed = model.image_encoder(x)
        with pytest.raises(ValueError, match="windows='wide'"):
            model.image_encoder(x, windows="wide")
        assert torch.equal(model.image_encoder(x), fixed)  # a failed call left nothing behind
    assert not torch.equal(fixed, by_config)


def test_train_offset_in_a_scaled_window_is_its_own_diameter():
    """bm_blocks=all, offset train: the bias vanishes inside the window attended, scaled or not."""
    mode = BlockAttentionMode(AttentionConfig.from_preset("basam", bm_blocks="all"), 2, 32, False, (4, 4), (16, 16))
    assert mode.bias_offset((4, 4)) == grid_diameter((4, 4), "euclidean")
    assert mode.bias_offset((8, 8)) == grid_diameter((8, 8), "euclidean")
    numeric = BlockAttentionMode(
        AttentionConfig.from_preset("basam", bm_blocks="all", bm_offset="2"), 2, 32, False, (4, 4), (16, 16)
    )
    assert numeric.bias_offset((8, 8)) == 2.0  # a number stays in tokens
    glob = BlockAttentionMode(AttentionConfig.from_preset("basam"), 2, 32, True, (16, 16), (16, 16))
    assert glob.bias_offset((32, 32)) == grid_diameter((16, 16), "euclidean")  # global: the pretraining grid
    # So with offset train the windowed blocks' bias is zero in scaled windows as in fixed ones
    # (λ(N) is the whole image's in both): bm_blocks=all adds nothing over bm_blocks=global there;
    # with offset 0 it does.
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(4))
    global_only = tiny_model(AttentionConfig.from_preset("basam", windows="scaled"))
    with torch.no_grad():
        reference = global_only.image_encoder(x)
        for offset, same in (("train", True), ("0", False)):
            all_blocks = tiny_model(
                AttentionConfig.from_preset("basam", bm_blocks="all", bm_offset=offset, windows="scaled")
            )
            assert ((all_blocks.image_encoder(x) - reference).abs().max() <= 1e-5) == same


def test_windows_option_is_validated_saved_and_described(tmp_path):
    with pytest.raises(ValueError, match="windows"):
        AttentionConfig(windows="grown")
    cfg = AttentionConfig.from_preset("basam", windows="scaled")
    assert "windows=scaled" in cfg.describe()
    model = basam.Sam(TINY, cfg)
    back = basam.load_model("tiny", checkpoint=basam.save_model(model, tmp_path / "m.safetensors"))
    assert back.attn_cfg.windows == "scaled" and back.image_encoder.windows == "scaled"
    assert basam.load_model("tiny", windows="scaled").image_encoder.windows == "scaled"


@pytest.mark.parametrize(
    "orig, train_side, resized, padded",
    [
        ((100, 150), 256, (171, 256), (256, 256)),  # smaller: SAM's resize up to the training side, padded
        ((480, 640), 1024, (768, 1024), (1024, 1024)),
        ((256, 200), 256, (256, 208), (256, 208)),  # at the training side: native (rounded to 16)
        ((1000, 1500), 1024, (1008, 1504), (1008, 1504)),  # larger: native
        ((3000, 4000), 1024, (1536, 2048), (1536, 2048)),  # beyond the cap: long side resized to it
        ((8000, 1000), 256, (2048, 256), (2048, 256)),
    ],
)
def test_auto_picks_the_sizes(orig, train_side, resized, padded):
    assert model_input_size(orig, "auto", train_side) == (resized, padded)


def test_auto_cap_is_an_option_and_validated():
    assert model_input_size((3000, 4000), "auto", 1024, max_side=1024) == ((768, 1024), (768, 1024))
    with pytest.raises(ValueError, match="resolution 1000"):
        model_input_size((3000, 4000), "auto", 1024, max_side=1000)


def test_predictor_default_is_the_training_side_and_auto_uses_scaled_windows():
    model = tiny_model()
    assert basam.Predictor(model).resolution == TINY.img_size
    rng = np.random.default_rng(0)
    small, large = (
        rng.integers(0, 256, (100, 140, 3), dtype=np.uint8),
        rng.integers(0, 256, (520, 400, 3), dtype=np.uint8),
    )
    auto = basam.Predictor(model, resolution="auto")
    auto.set_image(small)
    assert auto.padded_hw == (256, 256)
    auto.set_image(large)
    assert auto.padded_hw == (528, 400)
    with torch.no_grad():
        x = auto.features
        model.set_attention(AttentionConfig(windows="scaled"))
        native_scaled = basam.Predictor(model, resolution="native")
        native_scaled.set_image(large)
    assert torch.equal(x, native_scaled.features)
    assert model.attn_cfg.windows == "scaled"
    with pytest.raises(ValueError, match="resolution"):
        basam.Predictor(model, resolution="auto", max_side=100)
