"""The opt-in C++ attention kernel (basam.use_fused_attention): it is compiled here with the
machine's C++ compiler, and must give the default path's outputs for every attention setting."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, AttentionConfig
from basam.modeling.attention import BlockAttentionMode, attend
from basam.modeling.image_encoder import decomposed_rel_pos
from basam.runtime.kernels import fused_kernel

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def fused():
    basam.use_fused_attention()
    yield fused_kernel()
    basam.use_fused_attention(False)


# "tiny" with a 5-token window, so that the 16×16 grid at 256 px needs padded windows.
CONFIG = dataclasses.replace(MODEL_CONFIGS["tiny"], window_size=5)


@pytest.mark.parametrize(
    "attn, overrides, size, windows",
    [
        ("sam", {}, 256, None),
        ("sam", {}, 352, "scaled"),
        ("basam", {}, 384, None),  # above the training size: the bias acts beyond the `train` offset
        ("basam", {"bm_offset": "0", "bm_blocks": "all", "bm_distance": "manhattan"}, 256, None),
        ("bm", {"bm_offset": "1", "bm_distance": "raster"}, 320, "scaled"),
        ("official", {}, 320, None),
        ("basam", {"chunk_mb": 0.01}, 384, None),  # many chunks of query rows
    ],
)
def test_fused_kernel_equals_the_default_path(fused, attn, overrides, size, windows):
    torch.manual_seed(0)
    cfg = AttentionConfig.from_preset(attn, **overrides)
    model = basam.Sam(CONFIG, cfg).eval()
    with torch.no_grad():  # non-zero rel-pos tables, slopes and gain, so that each term matters
        for name, p in model.image_encoder.named_parameters():
            if "rel_pos" in name or "relpos_gain" in name:
                p.normal_(0, 0.5)
    x = torch.randn(2, 3, size, size)
    basam.use_fused_attention(False)
    with torch.no_grad():
        reference = model.image_encoder(x, windows=windows)
    basam.use_fused_attention()
    with torch.no_grad():
        got = model.image_encoder(x, windows=windows)
    assert (got - reference).abs().max() <= 1e-5


def test_fused_kernel_equals_sdpa_with_a_large_bias(fused):
    # Scores far apart (a steep bias): the running softmax must rescale what it summed so far.
    torch.manual_seed(1)
    grid, heads, d = (24, 40), 4, 16
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(1, heads, n, d) * 3 for _ in range(3))
    mode = BlockAttentionMode(
        AttentionConfig.from_preset("basam", bm_offset="0", bm_slope_scale=8.0), heads, d, True, grid, grid
    )
    rel_h, rel_w = torch.randn(2 * grid[0] - 1, d), torch.randn(2 * grid[1] - 1, d)

    def run(q, k, v, rel_h, rel_w):
        with torch.no_grad():
            return attend(q, k, v, grid, mode, 0.3, decomposed_rel_pos(q, grid, rel_h, rel_w))

    fused_out = run(q, k, v, rel_h, rel_w)
    exact = run(*(t.double() for t in (q, k, v, rel_h, rel_w)))  # float64 takes the default path
    basam.use_fused_attention(False)
    try:
        sdpa_out = run(q, k, v, rel_h, rel_w)
    finally:
        basam.use_fused_attention()
    fused_error, sdpa_error = ((out.double() - exact).abs().max().item() for out in (fused_out, sdpa_out))
    assert fused_error <= max(2 * sdpa_error, 1e-6)
    assert fused_error <= 1e-5 * exact.abs().max().item()


def test_bf16_encoder_through_the_kernel_is_as_close_to_fp32(fused):
    # bf16 weights: the kernel keeps the softmax and the rel-pos and bias terms in float32 (and, without
    # AVX512-BF16, the products too), so it may not stray further from fp32 than the default bf16 path.
    from basam.runtime.precision import set_precision

    torch.manual_seed(0)
    model = basam.Sam(CONFIG, AttentionConfig.from_preset("basam")).eval()
    x = torch.randn(1, 3, 384, 384)
    basam.use_fused_attention(False)
    with torch.no_grad():
        reference = model.image_encoder(x)
        set_precision(model, "bf16")
        default_bf16 = model.image_encoder(x)
        basam.use_fused_attention()
        fused_bf16 = model.image_encoder(x)
    default_error, fused_error = ((out - reference).abs().max().item() for out in (default_bf16, fused_bf16))
    assert 0 < fused_error <= 1.2 * default_error + 1e-3


def test_a_failed_build_is_one_line_and_exit_2(tmp_path):
    # No compiler: the flag's command stops with the reason, not a traceback.
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 48)).save(image)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "basam.cli",
            "predict",
            str(image),
            "--model",
            "tiny",
            "--fused-attention",
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"basam predict: error: cannot build the fused attention kernel: no C++ compiler ({env['CXX']} not found; "
        "install g++ or set CXX)"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "grid, d, dv, first_row",
    [
        ((24, 40), 16, 16, 0),  # two key blocks (512 + 448), query rows in tiles of 6 with a tail
        ((7, 9), 80, 80, 5),  # an odd number of keys, 80 channels (vit_h's heads: 4 + 1 vectors of 16)
        ((14, 14), 64, 24, 0),  # a vit_b window; fewer value channels than a vector group holds
    ],
)
def test_bf16_products_match_float32_products(fused, grid, d, dv, first_row):
    if not fused.bf16_native():
        pytest.skip(
            "no bf16 products in this build of the kernel (no AVX512-BF16, or a capability capped below "
            "AVX512): bf16 inputs take the float32 products"
        )
    torch.manual_seed(2)
    heads, n = 3, grid[0] * grid[1]
    rows = n - first_row
    q = torch.randn(2, heads, rows, d).bfloat16()
    k, v = torch.randn(2, heads, n, d).bfloat16(), torch.randn(2, heads, n, dv).bfloat16()
    rel_h, rel_w = torch.randn(2, heads, rows, grid[0]), torch.randn(2, heads, rows, grid[1])
    slopes = -torch.rand(heads)

    def run(q, k, v):
        out = q.new_empty(2, heads, rows, dv)
        fused.relpos_attention(q, k, v, rel_h, rel_w, out, first_row, d**-0.5, slopes, 1.0, 0)
        return out.double()

    native = run(q, k, v)
    cast = run(q.float(), k.float(), v.float())  # the same bf16 numbers, float32 products
    # The products round the probabilities to bf16 (as PyTorch's bf16 attention does): a bf16
    # rounding's worth of difference (2⁻⁸ relative), not more.
    assert (native - cast).abs().max() <= 2**-7 * cast.abs().max()
    assert (native - cast).abs().mean() <= 2**-8 * cast.abs().mean()
