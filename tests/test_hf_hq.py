"""Hugging Face SamHQModel (HQ-SAM) folders in and out, checked against transformers' own forward."""

import dataclasses
import json

import pytest
import torch

import basam
from basam.config import MODEL_CONFIGS, hq_config
from basam.formats.hf import hf_config, hf_name

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

# the tiny test size (256 px, a 16×16 grid) with the HQ decoder and HF's decoder LayerNorm eps
TINY_HQ = dataclasses.replace(hq_config(MODEL_CONFIGS["tiny"]), decoder_norm_eps=1e-6)


def random_hf_hq_model(seed: int = 0):
    """A transformers SamHQModel of TINY_HQ's architecture with every tensor random."""
    from transformers import SamHQConfig, SamHQModel

    config = hf_config(TINY_HQ)
    torch.manual_seed(seed)
    model = SamHQModel(SamHQConfig(**{k: v for k, v in config.items() if k != "architectures"})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_weight = "norm" in name and name.endswith("weight")
            p.copy_(1 + 0.05 * torch.randn_like(p) if is_norm_weight else 0.05 * torch.randn_like(p))
    return model


def compare(hf_model, ours, atol=1e-4):
    """HF's whole forward against basam's encode + decode (box and point prompts, multimask on and
    off, hq_token_only both ways), and basam against the release (segment_anything_hq) on the same
    weights.

    transformers 5.24's SamHQModel departs from the release in one place: its mask decoder
    upscales the decoder's input (image embedding + dense prompt, read with H and W swapped) where
    the release upscales the two-way transformer's output. Embeddings, early features and scores
    equal HF's; HF's masks are reproduced from basam's decoder parts given that input; basam's own
    masks equal the release's. With multimask HF returns SAM's three masks ranked by score, each
    plus the HQ mask; the release (and basam) return the first of them."""
    from official_hq import official_hq_sam

    release = official_hq_sam(ours.cfg)
    release.load_state_dict(ours.state_dict())
    torch.manual_seed(1)
    image = torch.randn(1, 3, 256, 256)
    box = torch.tensor([[30.0, 40.0, 200.0, 220.0]])
    points, labels = torch.tensor([[[60.0, 90.0], [180.0, 30.0]]]), torch.tensor([[1, 0]])
    decoder = ours.mask_decoder
    with torch.no_grad():
        emb, early = ours.encode(image)
        hf_emb, hf_intermediate = hf_model.get_image_embeddings(image)
        release_emb, release_interm = release.image_encoder(image)
    assert (emb - hf_emb).abs().max() <= atol and (emb - release_emb).abs().max() <= atol
    assert (early - hf_intermediate[0].permute(0, 3, 1, 2)).abs().max() <= atol  # the first global block's output
    assert (early - release_interm[0].permute(0, 3, 1, 2)).abs().max() <= atol
    departures = []
    for prompt in ({"boxes": box}, {"points": (points, labels)}):
        hf_prompt = (
            {"input_boxes": box[:, None]}
            if "boxes" in prompt
            else {"input_points": points[:, None], "input_labels": labels[:, None]}
        )
        with torch.no_grad():
            sparse, dense = ours.prompt_encoder(prompt.get("points"), prompt.get("boxes"), None, (256, 256))
            iou_all, tokens, _ = decoder.run_transformer(emb, ours.prompt_encoder.get_dense_pe((16, 16)), sparse, dense)
            hf_keys = (emb + dense).transpose(2, 3).reshape(1, 32, 256).transpose(1, 2)  # what HF upscales
            hq = decoder.hq_features(emb, early)
        for multimask in (False, True):
            for hq_token_only in (False, True):
                with torch.no_grad():
                    low, iou = ours.decode(
                        emb,
                        (256, 256),
                        multimask_output=multimask,
                        early_features=early,
                        hq_token_only=hq_token_only,
                        **prompt,
                    )
                    out = hf_model(
                        pixel_values=image, multimask_output=multimask, hq_token_only=hq_token_only, **hf_prompt
                    )
                    token, _ = decoder.select_sam_mask(iou_all, multimask)
                    as_hf = decoder.hq_masks(tokens, hf_keys, (16, 16), hq, None if hq_token_only else token)
                    theirs = release.mask_decoder(
                        release_emb,
                        release.prompt_encoder.get_dense_pe(),
                        sparse,
                        dense,
                        multimask,
                        hq_token_only,
                        release_interm,
                    )
                hf_low, hf_iou = out.pred_masks[:, 0, :1], out.iou_scores[:, 0, :1]
                assert low.shape == hf_low.shape == (1, 1, 64, 64)
                assert (iou - hf_iou).abs().max() <= atol and (as_hf - hf_low).abs().max() <= atol
                assert (low - theirs[0]).abs().max() <= atol and (iou - theirs[1]).abs().max() <= atol
                departures.append(float((low - hf_low).abs().max() / hf_low.abs().max()))
    assert len(departures) == 8 and max(departures) > 0.02  # the departure is real, not round-off


def test_hf_hq_folder_loads_and_matches_transformers(tmp_path):
    hf_model = random_hf_hq_model()
    hf_model.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="eps 1e-06"):
        ours = basam.load_model("default", checkpoint=tmp_path / "hf")
    assert ours.is_hq and ours.cfg == TINY_HQ
    compare(hf_model, ours)


def test_hq_model_saved_as_hf_opens_in_transformers(tmp_path):
    from official import randomize

    ours = randomize(basam.Sam(TINY_HQ), seed=3).eval()
    basam.save_model(ours, tmp_path / "hf", format="hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["SamHQModel"]
    hf_model = transformers.SamHQModel.from_pretrained(tmp_path / "hf").eval()
    compare(hf_model, ours)
    with pytest.warns(UserWarning, match="eps 1e-06"):
        back = basam.load_model(checkpoint=tmp_path / "hf")
    assert back.cfg == TINY_HQ
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ours.state_dict().values()))


def test_every_hq_name_maps_onto_transformers():
    hf_keys = set(random_hf_hq_model().state_dict()) - {"prompt_encoder.shared_embedding.positional_embedding"}
    assert {hf_name(k) for k in basam.Sam(TINY_HQ).state_dict()} == hf_keys


def test_tiny_vit_has_no_hf_form(tmp_path):
    with pytest.raises(ValueError, match="tiny_vit encoder"):
        basam.save_model(basam.load_model("hq_vit_tiny"), tmp_path / "hf", format="hf")
