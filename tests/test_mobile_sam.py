"""vit_t (MobileSAM's TinyViT-5M encoder): the released names and shapes, any input size, the
released windows, BA-SAM's presets."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

import basam
from basam.modeling.tiny_vit import TinyViTBlock

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest: faster on the shared 2-core machines

# MobileSAM's build_sam_vit_t: TinyViT(img_size=1024, embed_dims=[64, 128, 160, 320],
# depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4,
# mbconv_expand_ratio=4, local_conv_size=3, num_classes=1000), then SAM's neck.
DIMS, DEPTHS, HEADS, WINDOWS = (64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10), (7, 7, 14, 7)


def released_encoder_shapes() -> dict[str, tuple]:
    """`mobile_sam.pt`'s image_encoder.* names → shapes, restated from the released module
    structure (Conv2d_BN = conv `c` + BatchNorm `bn`; stage 0 MBConv blocks; stages 1–3 TinyViT
    blocks; PatchMerging between stages; the classifier head the release keeps)."""
    shapes = {}

    def conv_bn(name, cin, cout, k=1, groups=1):
        shapes[f"{name}.c.weight"] = (cout, cin // groups, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{stat}"] = (cout,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()

    def linear(name, cin, cout):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin), (cout,)

    def norm(name, dim):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (dim,), (dim,)

    conv_bn("patch_embed.seq.0", 3, 32, 3)
    conv_bn("patch_embed.seq.2", 32, 64, 3)
    for i, (dim, depth) in enumerate(zip(DIMS, DEPTHS)):
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}"
            if i == 0:
                conv_bn(f"{block}.conv1", dim, 4 * dim)
                conv_bn(f"{block}.conv2", 4 * dim, 4 * dim, 3, groups=4 * dim)
                conv_bn(f"{block}.conv3", 4 * dim, dim)
                continue
            shapes[f"{block}.attn.attention_biases"] = (HEADS[i], WINDOWS[i] ** 2)
            norm(f"{block}.attn.norm", dim)
            linear(f"{block}.attn.qkv", dim, 3 * dim)
            linear(f"{block}.attn.proj", dim, dim)
            norm(f"{block}.mlp.norm", dim)
            linear(f"{block}.mlp.fc1", dim, 4 * dim)
            linear(f"{block}.mlp.fc2", 4 * dim, dim)
            conv_bn(f"{block}.local_conv", dim, dim, 3, groups=dim)
        if i < 3:
            out = DIMS[i + 1]
            conv_bn(f"layers.{i}.downsample.conv1", dim, out)
            conv_bn(f"layers.{i}.downsample.conv2", out, out, 3, groups=out)
            conv_bn(f"layers.{i}.downsample.conv3", out, out)
    norm("norm_head", 320)
    linear("head", 320, 1000)
    shapes["neck.0.weight"] = (256, 320, 1, 1)
    norm("neck.1", 256)
    shapes["neck.2.weight"] = (256, 256, 3, 3)
    norm("neck.3", 256)
    return {f"image_encoder.{k}": v for k, v in shapes.items()}


@pytest.fixture(scope="module")
def vit_t():
    return basam.load_model("vit_t")


def released_state(model) -> dict[str, torch.Tensor]:
    """A MobileSAM-shaped state dict with random values: the restated encoder, SAM's decoder side."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) if s else torch.tensor(7) for k, s in released_encoder_shapes().items()}
    for k, v in state.items():
        if k.endswith("running_var"):
            v.abs_().add_(0.5)
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.")})
    return state


def test_loads_the_released_names_and_shapes_strictly(vit_t, tmp_path, capfd):
    state = released_state(vit_t)
    assert len(state) - len(vit_t.state_dict()) == 4  # norm_head and head: accepted, not built
    torch.save(state, tmp_path / "mobile_sam.pt")
    model = basam.load_model("vit_t", checkpoint=tmp_path / "mobile_sam.pt")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "ignoring TinyViT's classifier head (4 tensors" in err
    own = model.state_dict()
    for k, v in state.items():
        if "head" not in k.split(".")[1]:
            assert torch.equal(own[k], v), k  # BatchNorm running stats included
    assert basam.formats.checkpoint.guess_model_type(state) == "vit_t"

    wrong = dict(state)
    wrong["image_encoder.layers.2.blocks.0.attn.attention_biases"] = torch.zeros(5, 49)
    del wrong["image_encoder.layers.1.blocks.1.local_conv.bn.running_mean"]
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(
        basam.CheckpointError,
        match="1 missing: .*local_conv.bn.running_mean.*1 wrong shape: "
        r".*attention_biases \(5, 49\)≠\(5, 196\).*looks like vit_t",
    ):
        basam.load_model("vit_t", checkpoint=tmp_path / "wrong.pt")


SIZES = [(512, 512), (1024, 1024), (1536, 1536), (512, 768)]


@pytest.fixture(scope="module")
def sam_embeddings(vit_t):
    """Plain-SAM (preset `sam`) embeddings of one random image per size."""
    with torch.no_grad():
        return {
            hw: vit_t.image_encoder(torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(i)))
            for i, hw in enumerate(SIZES)
        }


@pytest.mark.parametrize("hw", SIZES)
def test_any_size_gives_the_sam_grid(vit_t, sam_embeddings, hw):
    """The released encoder only runs at 1024 px (it views its tokens as 64×64)."""
    emb = sam_embeddings[hw]
    assert emb.shape == (1, 256, hw[0] // 16, hw[1] // 16) and torch.isfinite(emb).all()
    with torch.no_grad():
        masks, iou = vit_t.decode(emb, hw, boxes=torch.tensor([[10.0, 20.0, 200.0, 300.0]]), multimask_output=True)
    assert masks.shape == (1, 3, hw[0] // 4, hw[1] // 4) and iou.shape == (1, 3)


def released_block(block: TinyViTBlock, x: torch.Tensor) -> torch.Tensor:
    """The released TinyViTBlock.forward restated on (B, L, C) tokens of an H×W grid: zero-pad to
    whole windows, LayerNorm inside the attention (so padded tokens become the norm's bias),
    per-head q/k/v split, the bias of each (|Δrow|, |Δcol|), crop, local conv, MLP."""
    b, h, w, c = x.shape
    ws, attn = block.window_size, block.attn
    pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
    y = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    ph, pw = h + pad_b, w + pad_r
    y = y.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
    q, k, v = attn.qkv(attn.norm(y)).view(y.shape[0], ws * ws, attn.num_heads, -1).split([c // attn.num_heads] * 3, 3)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
    cells = list(itertools.product(range(ws), repeat=2))
    offsets = {}
    idx = [offsets.setdefault((abs(p[0] - r[0]), abs(p[1] - r[1])), len(offsets)) for p in cells for r in cells]
    bias = attn.attention_biases[:, torch.tensor(idx).view(ws * ws, ws * ws)]
    a = ((q @ k.transpose(-2, -1)) * (c // attn.num_heads) ** -0.5 + bias).softmax(-1)
    y = attn.proj((a @ v).transpose(1, 2).reshape(-1, ws * ws, c))
    y = y.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)[:, :h, :w]
    x = x + y
    x = block.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return x + block.mlp(x)


@pytest.mark.parametrize("stage, grid", [(1, 128), (2, 64), (3, 64)])
def test_windows_at_1024_are_the_released_ones(vit_t, stage, grid):
    """At 1024 px the stages see 128, 64 and 64 tokens a side: windows 7, 14, 7 padded to 133, 70, 70."""
    block = copy.deepcopy(vit_t.image_encoder.layers[stage].blocks[0])
    with torch.no_grad():
        block.attn.attention_biases.normal_()
        x = torch.randn(1, grid, grid, block.attn.norm.weight.numel(), generator=torch.Generator().manual_seed(stage))
        seen = []
        hook = block.attn.register_forward_hook(lambda m, args, out: seen.append((args[0].shape, args[1])))
        try:
            out = block(x)
        finally:
            hook.remove()
        ws = block.window_size
        n_windows = (-(-grid // ws)) ** 2
        assert seen == [(torch.Size([n_windows, ws, ws, x.shape[-1]]), torch.Size([grid, grid]))]
        assert grid % ws  # every stage pads at 1024 px, so the padding order matters
        assert (out - released_block(block, x)).abs().max() < 1e-4


def test_basam_presets_act_on_vit_t_and_equal_sam_at_1024(vit_t, sam_embeddings):
    """On vit_t every attention is windowed: `basam` acts through λ(N) of each stage's grid
    (nsf_blocks=all; its bias, global blocks only, has none to act on); the bias acts in windows
    with bm_blocks=all and offset 0. At 1024 px (each stage's training grid) `basam` is `sam`."""

    def encode(hw, preset, **overrides):
        vit_t.set_attention(basam.AttentionConfig.from_preset(preset, **overrides))
        try:
            with torch.no_grad():
                x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(SIZES.index(hw)))
                return vit_t.image_encoder(x)
        finally:
            vit_t.set_attention(basam.AttentionConfig())

    assert torch.allclose(encode((1024, 1024), "basam"), sam_embeddings[(1024, 1024)], atol=1e-5)
    small = sam_embeddings[(512, 768)]
    assert (encode((512, 768), "basam") - small).abs().max() > 1e-3
    assert (encode((512, 768), "bm", bm_blocks="all", bm_offset="0") - small).abs().max() > 1e-3
    with pytest.raises(ValueError, match="'official' is defined for the ViT encoder only"):
        basam.load_model("vit_t", attn="official")


def test_scaled_windows_grow_with_the_input_and_are_fixed_ones_at_1024(vit_t, sam_embeddings):
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(SIZES.index((1024, 1024))))
    seen = []
    hooks = [
        layer.blocks[0].attn.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
        for layer in vit_t.image_encoder.layers[1:]
    ]
    try:
        with torch.no_grad():
            assert torch.equal(vit_t.image_encoder(x, windows="scaled"), sam_embeddings[(1024, 1024)])
            small = vit_t.image_encoder(
                torch.randn(1, 3, 512, 768, generator=torch.Generator().manual_seed(3)), windows="scaled"
            )
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [7, 14, 7, 5, 11, 5]  # at 512×768 the long side is 0.75× 1024: 7·0.75 → 5, 14·0.75 → 11
    assert (small - sam_embeddings[(512, 768)]).abs().max() > 1e-3
