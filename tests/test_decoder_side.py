"""Prompt encoder, two-way transformer and mask decoder against the official code (tiny sizes)."""

import pytest
import torch

from basam.modeling.mask_decoder import MaskDecoder
from basam.modeling.prompt_encoder import PromptEncoder
from basam.modeling.transformer import TwoWayTransformer

DIM, MLP_DIM, HEADS, MASK_CHANS, IOU_HIDDEN = 32, 64, 2, 4, 32
GRID, INPUT = (16, 16), (256, 256)
TOL = 1e-5


def _maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item() if a.numel() else 0.0


def _perturb(module):
    # Official init leaves LayerNorms at 1/0 and some layers near-degenerate: randomise every
    # tensor so a wrong mapping or a skipped term cannot hide behind an identity.
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            t.copy_(torch.randn_like(t) * 0.5)


@pytest.fixture
def pair(official):
    torch.manual_seed(0)
    ref_pe = official.PromptEncoder(
        embed_dim=DIM, image_embedding_size=GRID, input_image_size=INPUT, mask_in_chans=MASK_CHANS
    )
    ref_dec = official.MaskDecoder(
        transformer_dim=DIM,
        transformer=official.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM),
        num_multimask_outputs=3,
        iou_head_hidden_dim=IOU_HIDDEN,
    )
    _perturb(ref_pe)
    _perturb(ref_dec)
    ours_pe = PromptEncoder(DIM, MASK_CHANS)
    ours_dec = MaskDecoder(DIM, TwoWayTransformer(2, DIM, HEADS, MLP_DIM), 3, iou_head_hidden_dim=IOU_HIDDEN)
    ours_pe.load_state_dict(ref_pe.state_dict(), strict=True)
    ours_dec.load_state_dict(ref_dec.state_dict(), strict=True)
    for m in (ref_pe, ref_dec, ours_pe, ours_dec):
        m.eval()
    return (ref_pe, ref_dec), (ours_pe, ours_dec)


def _prompts(kind):
    g = torch.Generator().manual_seed(1)
    b = 2
    points = boxes = masks = None
    if "points" in kind:
        coords = torch.rand(b, 3, 2, generator=g) * 255
        labels = torch.tensor([[1, 0, 1], [0, 1, -1]])
        points = (coords, labels)
    if "boxes" in kind:
        xy0 = torch.rand(b, 2, generator=g) * 120
        boxes = torch.cat([xy0, xy0 + 20 + torch.rand(b, 2, generator=g) * 100], dim=1)
    if "masks" in kind:
        masks = torch.randn(b, 1, 4 * GRID[0], 4 * GRID[1], generator=g)
    return points, boxes, masks


@pytest.mark.parametrize("kind", ["points", "boxes", "points+boxes", "masks", "points+masks", "none"])
@pytest.mark.parametrize("multimask", [True, False])
def test_matches_official(pair, kind, multimask):
    (ref_pe, ref_dec), (ours_pe, ours_dec) = pair
    points, boxes, masks = _prompts(kind)
    emb = torch.randn(1, DIM, *GRID, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_sparse, ref_dense = ref_pe(points=points, boxes=boxes, masks=masks)
        sparse, dense = ours_pe(points, boxes, masks, image_hw=INPUT)
        assert sparse.shape == ref_sparse.shape and dense.shape == ref_dense.shape
        assert _maxdiff(sparse, ref_sparse) <= TOL
        assert _maxdiff(dense, ref_dense) <= TOL

        ref_pos = ref_pe.get_dense_pe()
        pos = ours_pe.get_dense_pe(GRID)
        assert _maxdiff(pos, ref_pos) <= TOL

        ref_masks, ref_iou = ref_dec(emb, ref_pos, ref_sparse, ref_dense, multimask)
        out_masks, out_iou = ours_dec(emb, pos, sparse, dense, multimask)
    m = 3 if multimask else 1
    assert out_masks.shape == (sparse.shape[0], m, 4 * GRID[0], 4 * GRID[1])
    assert out_iou.shape == (sparse.shape[0], m)
    assert _maxdiff(out_masks, ref_masks) <= TOL
    assert _maxdiff(out_iou, ref_iou) <= TOL


def test_transformer_matches_official(official):
    torch.manual_seed(3)
    ref = official.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=HEADS, mlp_dim=MLP_DIM)
    _perturb(ref)
    ours = TwoWayTransformer(2, DIM, HEADS, MLP_DIM)
    ours.load_state_dict(ref.state_dict(), strict=True)
    img, pe, tok = torch.randn(2, DIM, 6, 10), torch.randn(2, DIM, 6, 10), torch.randn(2, 5, DIM)
    with torch.no_grad():
        for a, b in zip(ref(img, pe, tok), ours(img, pe, tok)):
            assert a.shape == b.shape
            assert _maxdiff(a, b) <= TOL


def test_non_square_point_normalisation(pair):
    """x is normalised by the width and y by the height of the model input."""
    _, (ours_pe, _) = pair
    hw = (192, 320)
    # The encoder shifts by half a pixel first, so this point sits at (x, y) = (W, H/2).
    coords = torch.tensor([[[319.5, 95.5]]])
    sparse, _ = ours_pe((coords, torch.tensor([[1]])), None, None, image_hw=hw)
    expected = ours_pe.pe_layer._pe_encoding(torch.tensor([[[1.0, 0.5]]]))
    expected = expected + ours_pe.point_embeddings[1].weight
    assert torch.allclose(sparse[:, :1], expected, atol=TOL)


def test_non_square_grid_shapes(pair):
    _, (ours_pe, ours_dec) = pair
    grid = (12, 20)
    hw = (grid[0] * 16, grid[1] * 16)
    coords = torch.tensor([[[10.0, 150.0], [300.0, 20.0]]])
    boxes = torch.tensor([[5.0, 6.0, 250.0, 180.0]])
    mask = torch.randn(1, 1, 4 * grid[0], 4 * grid[1])
    with torch.no_grad():
        sparse, dense = ours_pe((coords, torch.tensor([[1, 0]])), boxes, mask, image_hw=hw)
        assert sparse.shape == (1, 4, DIM) and dense.shape == (1, DIM, *grid)
        pe = ours_pe.get_dense_pe(grid)
        assert pe.shape == (1, DIM, *grid)
        masks, iou = ours_dec(torch.randn(1, DIM, *grid), pe, sparse, dense, True)
    assert masks.shape == (1, 3, 4 * grid[0], 4 * grid[1]) and iou.shape == (1, 3)
    assert torch.isfinite(masks).all() and torch.isfinite(iou).all()


def test_prompt_free_call(pair):
    _, (ours_pe, ours_dec) = pair
    grid = (8, 12)
    with torch.no_grad():
        sparse, dense = ours_pe(None, None, None, image_hw=(128, 192))
        assert sparse.shape == (1, 0, DIM) and dense.shape == (1, DIM, *grid)
        masks, iou = ours_dec(torch.randn(1, DIM, *grid), ours_pe.get_dense_pe(grid), sparse, dense, False)
    assert masks.shape == (1, 1, 32, 48) and iou.shape == (1, 1)


def test_bad_prompt_shapes_raise(pair):
    _, (ours_pe, _) = pair
    with pytest.raises(ValueError, match="mask prompt"):
        ours_pe(None, None, torch.zeros(1, 1, 64, 64), image_hw=(128, 128))
    with pytest.raises(ValueError, match="batch sizes differ"):
        ours_pe((torch.zeros(2, 1, 2), torch.ones(2, 1)), torch.zeros(3, 4), None, image_hw=(128, 128))
    with pytest.raises(ValueError, match="multiples of the patch size"):
        ours_pe(None, None, None, image_hw=(100, 128))
