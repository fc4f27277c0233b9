"""BA-SAM's scaling factor and bias-mode attention mask (src/basam/attention.py)."""

import math

import numpy as np
import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, AttentionConfig
from basam.modeling.attention import BlockAttentionMode, alibi_slopes, attend, excess_distance, grid_diameter, nsf_scale
from official import official_sam, randomize

TINY = MODEL_CONFIGS["tiny"]


# --- λ(N) ----------------------------------------------------------------------------------------


def test_nsf_is_sam_scale_at_the_training_size():
    assert nsf_scale(4096, 4096, 64) == 64**-0.5


@pytest.mark.parametrize("px, ratio", [(512, 0.8333), (2048, 1.1667), (4096, 1.3333)])
def test_nsf_closed_form_for_vit_b(px, ratio):
    n = (px // 16) ** 2
    assert nsf_scale(n, 4096, 64) == pytest.approx(ratio / 8, abs=5e-6)


def test_nsf_on_non_square_grids_uses_the_true_token_count():
    mode = BlockAttentionMode(AttentionConfig.from_preset("nsf"), 12, 64, True, (64, 64), (64, 64))
    assert mode.scale(48 * 80) == pytest.approx(math.log(3840) / math.log(4096) / 8)
    assert mode.scale(80 * 48) == mode.scale(48 * 80)
    assert mode.scale(4 * 4) < 1 / 8 < mode.scale(100 * 60)


def test_windowed_blocks_keep_sam_scale_unless_asked():
    cfg = AttentionConfig.from_preset("nsf", nsf_blocks="global")
    windowed = BlockAttentionMode(cfg, 12, 64, False, (14, 14), (64, 64))
    assert windowed.scale(128 * 128) == 64**-0.5
    everywhere = BlockAttentionMode(AttentionConfig.from_preset("nsf"), 12, 64, False, (14, 14), (64, 64))
    assert everywhere.scale(128 * 128) == nsf_scale(128 * 128, 4096, 64)


# --- the bias ------------------------------------------------------------------------------------


def bias_of(grid, heads=4, **options):
    """The bias with the paper's settings (ALiBi slopes, no offset) unless `options` say otherwise."""
    cfg = AttentionConfig.from_preset("bm", **{"bm_slope_scale": 1.0, "bm_offset": "0", **options})
    mode = BlockAttentionMode(cfg, heads, 16, True, grid, grid)
    return -mode.slopes[:, None, None] * excess_distance(grid, mode.distance, mode.offset, slice(None), "cpu")


@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "raster"])
def test_bias_is_zero_on_diagonal_symmetric_and_falls_with_distance(distance):
    bias = bias_of((5, 7), bm_distance=distance)
    assert torch.all(bias.diagonal(dim1=1, dim2=2) == 0)
    assert torch.equal(bias, bias.transpose(1, 2))
    assert torch.all(bias <= 0)
    # Along a row of the grid, keys further from the first token never get a larger bias.
    row = bias[:, 0, :7]
    assert torch.all(row[:, 1:] <= row[:, :-1])


def test_bias_exact_values_on_a_3x3_grid():
    # Token 0 is (row 0, col 0); token 5 is (1, 2); token 8 is (2, 2).
    slope = alibi_slopes(1)[0]  # 2^-8 for one head
    assert slope == 2**-8
    expected = {
        "euclidean": {5: math.sqrt(5), 8: math.sqrt(8), 1: 1.0},
        "manhattan": {5: 3.0, 8: 4.0, 1: 1.0},
        "raster": {5: 5.0, 8: 8.0, 1: 1.0},
    }
    for distance, values in expected.items():
        bias = bias_of((3, 3), heads=1, bm_distance=distance)[0]
        for j, d in values.items():
            assert bias[0, j].item() == pytest.approx(-slope * d, rel=1e-6), (distance, j)
        # With an offset of 1.5, distances up to 1.5 cost nothing and the rest lose 1.5.
        shifted = bias_of((3, 3), heads=1, bm_distance=distance, bm_offset=1.5)[0]
        for j, d in values.items():
            assert shifted[0, j].item() == pytest.approx(-slope * max(0.0, d - 1.5), rel=1e-6)


@pytest.mark.parametrize("heads", [8, 12, 16])
def test_alibi_slopes_follow_the_alibi_rule(heads):
    def geometric(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if heads == 12:  # not a power of two: 8 slopes of 8 heads, then every other one of 16 heads
        expected = geometric(8) + geometric(16)[0::2][:4]
    else:
        expected = geometric(heads)
    assert alibi_slopes(heads) == pytest.approx(expected, rel=1e-12)
    assert alibi_slopes(12)[:8] == alibi_slopes(8)


def test_slope_scale_multiplies_the_slopes():
    base = bias_of((4, 4))
    assert torch.allclose(bias_of((4, 4), bm_slope_scale=0.5), 0.5 * base)


@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "raster"])
def test_train_offset_vanishes_on_the_training_grid(distance):
    assert torch.all(bias_of((16, 16), bm_distance=distance, bm_offset="train") == 0)
    cfg = AttentionConfig.from_preset("bm", bm_distance=distance, bm_offset="train")
    mode = BlockAttentionMode(cfg, 4, 16, True, (16, 16), (16, 16))
    assert mode.offset == grid_diameter((16, 16), distance)
    beyond = -mode.slopes[:, None, None] * excess_distance((24, 24), distance, mode.offset, slice(None), "cpu")
    assert beyond.min() < 0


# --- presets on the model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    return randomize(official_sam(TINY), seed=3).state_dict()


def encode(weights, preset, size=256, **overrides):
    model = basam.Sam(TINY, AttentionConfig.from_preset(preset, **overrides)).eval()
    basam.formats.checkpoint.load_state(model, weights)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model.image_encoder(x)


def test_sam_preset_equals_the_official_model(weights):
    off = official_sam(TINY)
    off.load_state_dict(weights)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (encode(weights, "sam") - off.image_encoder(x)).abs().max() <= 1e-6


def test_presets_equal_sam_at_the_training_size_and_only_there(weights):
    sam = encode(weights, "sam")
    for preset in ("nsf", "bm", "basam"):  # λ(N_train) is SAM's scale; the bias starts beyond the trained distances
        assert (encode(weights, preset) - sam).abs().max() <= 1e-6, preset
    assert torch.equal(encode(weights, "nsf", nsf_blocks="global"), sam)
    assert (encode(weights, "basam", bm_offset="0") - sam).abs().max() > 1e-5  # offset 0: the bias acts here too
    for preset in ("nsf", "bm", "basam"):
        assert (encode(weights, preset, size=512) - encode(weights, "sam", size=512)).abs().max() > 1e-5, preset


def test_preset_options_are_the_chosen_ones_and_overridable():
    cfg = AttentionConfig.from_preset("basam")
    assert (cfg.nsf, cfg.nsf_blocks, cfg.bias, cfg.bm_slope_scale, cfg.bm_offset) == (True, "all", True, 0.25, "train")
    paper = AttentionConfig.from_preset("basam", nsf_blocks="global", bm_slope_scale=1, bm_offset=0)
    assert (paper.nsf_blocks, paper.bm_slope_scale, paper.bm_offset) == ("global", 1, "0")
    assert AttentionConfig.from_preset("bm").nsf is False and AttentionConfig.from_preset("nsf").bias is False


def reference_official_block(attn, x, lam):
    """The released BA-SAM global attention, restated from its formula with explicit loops over
    offsets: softmax(λ q·k + 0.1·(q·R_h[Δrow] + q·R_w[Δcol])) v, at the pretraining grid."""
    b, h, w, c = x.shape
    heads, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    rel = torch.zeros(b, heads, h * w, h * w)
    for i in range(h * w):
        rh = attn.rel_pos_h[rows[i] - rows + h - 1]  # (N, d)
        rw = attn.rel_pos_w[cols[i] - cols + w - 1]
        rel[:, :, i, :] = q[:, :, i, :] @ rh.T + q[:, :, i, :] @ rw.T
    scores = lam * q @ k.transpose(-1, -2) + 0.1 * rel
    out = scores.softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(b, h, w, c))


def test_official_preset_matches_a_restatement_of_the_released_formula(weights, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(weights, path)
    model = basam.load_model("tiny", checkpoint=path, attn="official")
    encoder = model.image_encoder
    assert not encoder.use_pos_embed
    assert all(torch.all(b.attn.rel_pos_h == 0) for b in encoder.blocks)  # pretrained tables dropped
    block = encoder.blocks[TINY.encoder_global_attn_indexes[0]]
    # After fine-tuning the tables are non-zero; give them values so the gain matters.
    with torch.no_grad():
        block.attn.rel_pos_h.normal_(0, 0.3)
        block.attn.rel_pos_w.normal_(0, 0.3)
        x = torch.randn(1, 16, 16, TINY.encoder_embed_dim)
        ours = block.attn(x, image_grid=(32, 32))  # part of a 512 px image: λ of a 32×32 grid
        ref = reference_official_block(block.attn, x, nsf_scale(32 * 32, 256, block.attn.head_dim))
    assert (ours - ref).abs().max() <= 1e-5
    assert block.attn.mode.relpos_gain.item() == pytest.approx(0.1)


# --- chunking --------------------------------------------------------------------------------------


def test_chunked_equals_unchunked_with_bias_forward_and_backward():
    torch.manual_seed(0)
    grid, heads, d = (12, 10), 4, 8
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(2, heads, n, d, requires_grad=True) for _ in range(3))
    rel_h = torch.randn(2, heads, n, grid[0], requires_grad=True)
    rel_w = torch.randn(2, heads, n, grid[1], requires_grad=True)

    def run(chunk_mb):
        cfg = AttentionConfig.from_preset("basam", bm_learnable=True, chunk_mb=chunk_mb)
        mode = BlockAttentionMode(cfg, heads, d, True, (8, 8), (8, 8))
        with torch.no_grad():
            mode.slopes.mul_(torch.linspace(0.5, 4, heads))  # distinct, non-trivial slopes
        out = attend(q, k, v, grid, mode, mode.scale(n), lambda rows: (rel_h[:, :, rows], rel_w[:, :, rows]))
        (out * torch.cos(out)).sum().backward()
        grads = [t.grad.clone() for t in (q, k, v, rel_h, rel_w)] + [mode.slopes.grad.clone()]
        for t in (q, k, v, rel_h, rel_w):
            t.grad = None
        return out.detach(), grads

    whole, g_whole = run(1e3)
    chunked, g_chunked = run(2 * heads * n * 4 * 7 / 2**20)  # 7 query rows per chunk
    assert (whole - chunked).abs().max() <= 1e-5
    for a, b in zip(g_whole, g_chunked):  # slope gradients sum over N² terms: compare relatively
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert g_whole[-1].abs().min() > 0  # the slopes do receive gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("terms", ["relpos+bias", "relpos+gain+bias", "pos_bias+bias", "bias", "relpos", "none"])
def test_inference_chunks_in_reused_buffers_equal_one_chunk(monkeypatch, terms, dtype):
    """Without autograd, chunks write their masks into one buffer and their results into one output
    (distances too, past the cache size): the same as one chunk with fresh tensors."""
    import basam.modeling.attention as attention

    torch.manual_seed(1)
    grid, heads, d = (9, 11), 3, 8
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(2, heads, n, d, dtype=dtype) for _ in range(3))
    rel_h = torch.randn(2, heads, n, grid[0], dtype=dtype) if "relpos" in terms else None
    rel_w = torch.randn(2, heads, n, grid[1], dtype=dtype) if "relpos" in terms else None
    pos_bias = torch.randn(heads, n, n, dtype=dtype) if "pos_bias" in terms else None

    def run(chunk_mb):
        preset = "official" if "gain" in terms else "sam"
        cfg = AttentionConfig.from_preset(preset, bias="bias" in terms, bm_offset=1.5, chunk_mb=chunk_mb)
        mode = BlockAttentionMode(cfg, heads, d, True, (8, 8), (8, 8))
        if "gain" in terms:
            mode.relpos_gain.data.fill_(0.7)
        with torch.no_grad():
            rel_pos = (lambda rows: (rel_h[:, :, rows], rel_w[:, :, rows])) if rel_h is not None else None
            return attend(q, k, v, grid, mode, mode.scale(n), rel_pos, pos_bias)

    whole = run(1e3)
    monkeypatch.setattr(attention, "DISTANCE_CACHE_ENTRIES", 100)  # distances built per chunk, into a buffer
    chunked = run(2 * heads * n * 4 * 10 / 2**20)  # 10 query rows per chunk, the last one 9
    assert chunked.shape == whole.shape and chunked.dtype == dtype
    assert (whole.float() - chunked.float()).abs().max() <= (1e-5 if dtype == torch.float32 else 2e-2)
    assert chunked.transpose(1, 2).is_contiguous()  # the caller's (B, N, heads·d) view costs no copy


def test_rel_pos_of_some_query_rows_equals_those_rows_of_the_whole_term():
    from basam.modeling.image_encoder import decomposed_rel_pos

    torch.manual_seed(2)
    grid, heads, d = (7, 12), 3, 8
    q = torch.randn(2, heads, grid[0] * grid[1], d)
    rel_pos = decomposed_rel_pos(q, grid, torch.randn(9, d), torch.randn(11, d))  # tables resized to 13 and 23
    whole_h, whole_w = rel_pos(slice(0, 84))
    for rows in (slice(5, 30), slice(77, 84)):  # across grid rows, and the last chunk
        rel_h, rel_w = rel_pos(rows)
        assert torch.allclose(rel_h, whole_h[:, :, rows], atol=1e-6) and torch.allclose(
            rel_w, whole_w[:, :, rows], atol=1e-6
        )


@pytest.mark.parametrize("preset", ["sam", "basam"])
def test_encoder_in_small_chunks_equals_one_chunk(preset, one_thread):
    """The whole inference path (rel-pos made per chunk, mask and output buffers, the MLP in token
    slabs added in place) in a real encoder, against one chunk and against the autograd path."""
    model = basam.Sam(TINY, AttentionConfig.from_preset(preset, bm_offset=2.0))
    model.load_state_dict(randomize(official_sam(TINY), seed=5).state_dict())
    x = torch.randn(1, 3, 96, 160)
    plain = model.image_encoder(x).detach()  # grad enabled: new masks, x + mlp(x) out of place
    with torch.no_grad():
        whole = model.image_encoder(x)
        model.set_attention(AttentionConfig.from_preset(preset, bm_offset=2.0, chunk_mb=0.004))  # ~8 rows a chunk
        chunked = model.image_encoder(x)
    assert (whole - chunked).abs().max() <= 1e-5 and (plain - chunked).abs().max() <= 1e-5


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="bm_distance"):
        AttentionConfig.from_preset("bm", bm_distance="cosine")
    with pytest.raises(ValueError, match="unknown attention preset"):
        AttentionConfig.from_preset("alibi")
    with pytest.raises(ValueError, match="bm_offset"):
        AttentionConfig(bm_offset="far")
    assert np.isclose(grid_diameter((3, 3), "euclidean"), math.sqrt(8))
