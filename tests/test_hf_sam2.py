"""Hugging Face Sam2Model folders in and out, checked against transformers' own forward."""

import json

import pytest
import torch

import basam
from basam.formats.checkpoint import CheckpointError
from basam.formats.hf_sam2 import sam2_config_from_hf

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 256  # HF's Sam2Model reshapes to backbone_feature_sizes: it runs at its configured size only


def hf_small_config():
    """A small transformers Sam2Config written by hand (hiera_t's layout at a quarter of the width,
    a 32-wide decoder), so that the reader is not checked against basam's own writer."""
    from transformers import Sam2Config

    trunk = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 24,
        "num_attention_heads": 1,
        "image_size": [SIDE, SIDE],
        "blocks_per_stage": [1, 1, 3, 1],
        "embed_dim_per_stage": [24, 48, 96, 192],
        "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [8, 4, 14, 7],
        "global_attention_blocks": [3],
    }
    vision = {
        "backbone_config": trunk,
        "backbone_channel_list": [192, 96, 48, 24],
        "backbone_feature_sizes": [[SIDE // 4] * 2, [SIDE // 8] * 2, [SIDE // 16] * 2],
        "fpn_hidden_size": 32,
    }
    prompt = {"hidden_size": 32, "image_size": SIDE, "mask_input_channels": 4}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32}
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def random_hf_model(seed: int = 0):
    """A transformers Sam2Model with every parameter random (HF inits pos_embed, pos_embed_window and
    no_memory_embedding at zero, which would leave their mapping untested)."""
    from transformers import Sam2Model

    torch.manual_seed(seed)
    model = Sam2Model(hf_small_config()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_weight = "norm" in name and name.endswith("weight")
            p.copy_(1 + 0.1 * torch.randn_like(p) if is_norm_weight else 0.1 * torch.randn_like(p))
        # Two buffers, drawn apart at init; a converted release holds one matrix under both names.
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding
        )
    return model


def hf_forward(model, image, points=None, labels=None, box=None, multimask=True):
    """transformers' whole forward → (image embeddings [s0, s1, embedding], logits (1, M, h, w), IoUs (1, M))."""
    with torch.no_grad():
        out = model(
            pixel_values=image,
            input_points=None if points is None else points[:, None],
            input_labels=None if labels is None else labels[:, None],
            input_boxes=None if box is None else box[:, None],
            multimask_output=multimask,
        )
    return out.image_embeddings, out.pred_masks[:, 0], out.iou_scores[:, 0]


def basam_forward(model, image, points=None, labels=None, box=None, multimask=True):
    with torch.no_grad():
        embedding, high_res = model.encode(image)
        masks, iou = model.decode(
            embedding,
            (SIDE, SIDE),
            points=None if points is None else (points, labels),
            boxes=box,
            multimask_output=multimask,
            high_res_features=high_res,
        )
    return [*high_res, embedding], masks, iou


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    return ((a & b).sum() / (a | b).sum().clamp(min=1)).item()


PROMPTS = {
    "point": dict(points=torch.tensor([[[100.0, 140.0], [30.0, 200.0]]]), labels=torch.tensor([[1, 0]])),
    "box": dict(box=torch.tensor([[40.0, 60.0, 200.0, 180.0]])),
    # transformers puts the box corners after the clicks, the release before them: the decoder's
    # attention does not depend on the order of the prompt tokens, so the outputs agree all the same.
    "point+box": dict(
        points=torch.tensor([[[100.0, 140.0]]]),
        labels=torch.tensor([[1]]),
        box=torch.tensor([[40.0, 60.0, 200.0, 180.0]]),
    ),
}


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    """(transformers model, its save_pretrained folder, basam's model loaded from it)."""
    hf = random_hf_model()
    folder = tmp_path_factory.mktemp("hf_sam2")
    hf.save_pretrained(folder)
    return hf, folder, basam.load_model(checkpoint=folder)


def assert_same(ours, ref):
    (feats, masks, scores), (feats_ref, masks_ref, scores_ref) = ours, ref
    for a, b in zip(feats, feats_ref, strict=True):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4
    assert masks.shape == masks_ref.shape
    assert all(iou(masks[0, i], masks_ref[0, i]) >= 0.99 for i in range(masks.shape[1]))
    # random weights leave the masks only weakly tied to the prompt: the logits themselves must agree
    assert (masks - masks_ref).abs().max() <= 1e-4
    assert (scores - scores_ref).abs().max() <= 1e-4


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_hf_folder_matches_transformers_forward(hf_pair, prompt, multimask):
    hf, _, model = hf_pair
    image = torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    ref = hf_forward(hf, image, **PROMPTS[prompt], multimask=multimask)
    assert_same(basam_forward(model, image, **PROMPTS[prompt], multimask=multimask), ref)
    # the embedding varies over the grid (the trunk's position embeddings reached it)
    assert ref[0][-1].std() > 0.01 and ref[1].std() > 0.01


def test_named_release_size_and_architecture(hf_pair):
    _, folder, model = hf_pair
    assert model.cfg.name == "hf_sam2" and model.cfg.embed_dim == 24 and model.cfg.stages == (1, 1, 3, 1)
    assert model.cfg.img_size == SIDE and model.cfg.decoder_mlp_dim == 64
    with pytest.raises(CheckpointError, match="holds a hf_sam2 model"):
        basam.load_model("sam2.1_hiera_t", checkpoint=folder)


def test_basam_writes_a_folder_transformers_opens(hf_pair, tmp_path):
    from transformers import Sam2Model

    hf, _, model = hf_pair
    out = basam.save_model(model, tmp_path / "out", format="hf")
    reopened = Sam2Model.from_pretrained(out).eval()
    for name, p in hf.state_dict().items():
        assert torch.equal(p, reopened.state_dict()[name]), name
    image = torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    for prompt in PROMPTS.values():
        assert_same(basam_forward(model, image, **prompt), hf_forward(reopened, image, **prompt))
    again = basam.load_model(checkpoint=out)  # and back into basam, settings included
    assert again.cfg == model.cfg and again.attn_cfg == model.attn_cfg


def test_release_size_round_trips_under_either_name(tmp_path):
    model = basam.load_model("sam2.1_hiera_t")
    folder = basam.save_model(model, tmp_path / "t", format="hf")
    config = json.loads((folder / "config.json").read_text())
    config.pop("basam")  # as transformers' own save_pretrained writes it
    (folder / "config.json").write_text(json.dumps(config))
    assert basam.load_model(checkpoint=folder).cfg.name == "sam2.1_hiera_t"
    loaded = basam.load_model("sam2_hiera_t", checkpoint=folder)
    assert loaded.cfg.name == "sam2_hiera_t"
    for name, p in model.state_dict().items():
        assert torch.equal(p, loaded.state_dict()[name]), name


def test_unsupported_config_is_one_clear_error():
    config = hf_small_config().to_dict()
    config["mask_decoder_config"]["iou_head_depth"] = 4
    with pytest.raises(ValueError, match="iou_head_depth=4 is not supported"):
        sam2_config_from_hf(config)


def test_two_different_fourier_matrices_are_refused(hf_pair, tmp_path):
    hf, _, _ = hf_pair
    hf.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    state["prompt_encoder.shared_embedding.positional_embedding"] += 1
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="differs from shared_image_embedding"):
        basam.load_model(checkpoint=tmp_path)
