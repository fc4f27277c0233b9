"""The foundation: equivalence with the official SAM, any input size, chunked attention, checkpoints."""

import dataclasses

import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, AttentionConfig
from official import official_sam, twins

TINY = MODEL_CONFIGS["tiny"]


def prompts(size):
    s = size / 256
    return [
        dict(points=(torch.tensor([[[100.0, 80.0]]]) * s, torch.tensor([[1]])), boxes=None),
        dict(points=None, boxes=torch.tensor([[20.0, 30.0, 180.0, 220.0]]) * s),
        dict(
            points=(torch.tensor([[[100.0, 80.0], [30.0, 200.0]]]) * s, torch.tensor([[1, 0]])),
            boxes=torch.tensor([[20.0, 30.0, 180.0, 220.0]]) * s,
        ),
    ]


def image(size):
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def compare(off, ours, size, tol):
    """Encoder, prompt encoder and decoder against the official ones; → the official embeddings."""
    x = image(size)
    with torch.no_grad():
        emb_off, emb_ours = off.image_encoder(x), ours.image_encoder(x)
        assert (emb_off - emb_ours).abs().max() <= tol
        for p in prompts(size):
            sparse, dense = off.prompt_encoder(points=p["points"], boxes=p["boxes"], masks=None)
            for multi in (True, False):
                m_off, iou_off = off.mask_decoder(emb_off, off.prompt_encoder.get_dense_pe(), sparse, dense, multi)
                m_ours, iou_ours = ours.decode(emb_ours, (size, size), p["points"], p["boxes"], None, multi)
                assert m_off.shape == m_ours.shape
                assert (m_off - m_ours).abs().max() <= tol
                assert (iou_off - iou_ours).abs().max() <= tol
    return emb_off


def test_tiny_matches_official():
    compare(*twins(TINY), size=256, tol=1e-5)


def test_padded_windows_match_official():
    # A 5-token window does not divide the 16×16 grid: SAM pads it with zero tokens, which we do
    # after qkv (the padding is filled with qkv's output for a zero token, never multiplied).
    compare(*twins(dataclasses.replace(TINY, window_size=5)), size=256, tol=1e-5)


@pytest.mark.slow
def test_vit_b_full_depth_matches_official_at_1024():
    off, ours = twins(MODEL_CONFIGS["vit_b"])
    emb_off = compare(off, ours, size=1024, tol=1e-4)
    # Scaled windows at the training size are the trained windows: still the official SAM.
    with torch.no_grad():
        scaled = ours.image_encoder(image(1024), windows="scaled")
    assert (scaled - emb_off).abs().max() <= 1e-4


@pytest.mark.parametrize("hw", [(512, 512), (768, 1024), (1536, 1536), (2048, 2048)])
def test_any_size_runs_where_official_raises_and_chunking_is_exact(hw):
    off, ours = twins(TINY)
    h, w = hw
    x = torch.randn(1, 3, h, w)
    with pytest.raises(RuntimeError):
        off.image_encoder(x)
    with torch.no_grad():
        ours.set_attention(AttentionConfig(chunk_mb=1e5))  # one SDPA call per block
        emb = ours.image_encoder(x)
        assert emb.shape == (1, TINY.prompt_embed_dim, h // 16, w // 16)
        box = torch.tensor([[4.0, 4.0, w / 2, h / 2]])
        masks, iou = ours.decode(emb, (h, w), None, box, None, True)
        assert masks.shape == (1, 3, h // 4, w // 4) and iou.shape == (1, 3)
        assert torch.isfinite(masks).all()
        ours.set_attention(AttentionConfig(chunk_mb=h * w / 2**20))  # hundreds of chunks at 2048 px
        chunked = ours.image_encoder(x)
    assert (emb - chunked).abs().max() <= 1e-5


def test_non_square_pos_embed_and_rel_pos_follow_the_grid():
    _, ours = twins(TINY)
    x = torch.randn(1, 3, 96, 320)
    with torch.no_grad():
        assert ours.image_encoder(x).shape == (1, TINY.prompt_embed_dim, 6, 20)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        ours.image_encoder(torch.randn(1, 3, 100, 96))


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_state_dict_loads_strictly(name, tmp_path):
    cfg = MODEL_CONFIGS[name]
    if name == "vit_h":
        # Building vit_h twice is slow; compare key names and shapes with the official module on the
        # meta device instead of real tensors.
        with torch.device("meta"):
            off_shapes = {k: v.shape for k, v in official_sam(cfg).state_dict().items()}
            ours_shapes = {k: v.shape for k, v in basam.Sam(cfg).state_dict().items()}
        assert off_shapes == ours_shapes
        return
    path = tmp_path / f"sam_{name}.pth"
    torch.save(official_sam(cfg).state_dict(), path)
    model = basam.load_model(name, checkpoint=path)
    assert model.cfg.name == name
    assert "pixel_mean" not in model.state_dict()


def test_truncated_or_wrong_checkpoint_gives_a_readable_error(tmp_path):
    off = official_sam(TINY)
    good = tmp_path / "tiny.pth"
    torch.save(off.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(basam.CheckpointError, match="cannot read checkpoint"):
        basam.load_model("tiny", checkpoint=truncated)

    state = off.state_dict()
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.extra"] = torch.zeros(1)
    state["image_encoder.pos_embed"] = torch.zeros(1, 8, 8, 64)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(basam.CheckpointError) as err:
        basam.load_model("tiny", checkpoint=broken)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (
        "1 missing: mask_decoder.iou_token.weight",
        "1 unexpected: image_encoder.extra",
        "wrong shape: image_encoder.pos_embed (1, 8, 8, 64)",
    ):
        assert part in msg

    vit_b = tmp_path / "vit_b.pth"
    torch.save(official_sam(MODEL_CONFIGS["vit_b"]).state_dict(), vit_b)
    with pytest.raises(basam.CheckpointError, match="looks like vit_b"):
        basam.load_model("tiny", checkpoint=vit_b)


def test_safetensors_round_trip_keeps_config_and_attention(tmp_path):
    _, ours = twins(TINY)
    ours.set_attention(AttentionConfig.from_preset("basam", bm_learnable=True, bm_distance="manhattan"))
    with torch.no_grad():
        ours.image_encoder.blocks[1].attn.mode.slopes.mul_(3)
    path = basam.save_model(ours, tmp_path / "m.safetensors")
    back = basam.load_model("tiny", checkpoint=path)
    assert back.attn_cfg == ours.attn_cfg and back.cfg == ours.cfg
    for k, v in ours.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    # Another size than the file holds is refused in one line.
    with pytest.raises(basam.CheckpointError, match="holds a tiny model"):
        basam.load_model("vit_b", checkpoint=path)


def test_official_checkpoint_loads_under_learnable_basam():
    off, _ = twins(TINY)
    model = basam.Sam(TINY, AttentionConfig.from_preset("basam", bm_learnable=True))
    basam.formats.checkpoint.load_state(model, off.state_dict())
    assert any(n.endswith("mode.slopes") for n, _ in model.named_parameters())


def test_model_config_is_serialisable():
    d = TINY.to_dict()
    assert basam.ModelConfig.from_dict(d) == TINY
    assert dataclasses.asdict(TINY) == d


def test_fused_linear_equals_the_layer_and_keeps_its_hooks():
    from basam.modeling.common import linear

    torch.manual_seed(0)
    layer, x = torch.nn.Linear(16, 32), torch.randn(3, 5, 16)
    with torch.no_grad():
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
            layer_d, x_d = layer.to(dtype), x.to(dtype)
            assert (linear(layer_d, x_d) - layer_d(x_d)).abs().max() <= tol
            assert (linear(layer_d, x_d, gelu=True) - torch.nn.functional.gelu(layer_d(x_d))).abs().max() <= tol
        layer = layer.float()
        layer.register_forward_hook(lambda module, inputs, output: output + 1)  # as LoRA's hook
        assert torch.equal(linear(layer, x), layer(x))


def test_bf16_encoder_runs_where_onednn_has_no_bf16():
    # On an AVX2-only CPU oneDNN's bf16 linear fails; `linear()` must then take nn.Linear. The cap
    # stands in for such a CPU here.
    import os
    import subprocess
    import sys

    code = (
        "import torch, basam; m = basam.load_model('tiny', dtype='bf16'); "
        "torch.set_grad_enabled(False); print(tuple(m.image_encoder(torch.randn(1, 3, 64, 64)).shape))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.strip() == "(1, 32, 4, 4)"
