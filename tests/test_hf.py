"""Hugging Face SamModel checkpoints in and out, checked against transformers' own forward."""

import json
import shutil
import warnings

import pytest
import torch

import basam
from basam import ModelConfig
from basam.formats.checkpoint import CheckpointError
from basam.formats.hf import hf_config, hf_name, model_config_from_hf
from basam.training.tuning import add_adapters

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

# A small architecture at SAM's 1024 px (HF's SamModel runs at its configured size only): a 64×64
# grid of 32-wide tokens, one windowed and one global block, a small decoder.
SMALL_1024 = ModelConfig(
    "small1024",
    32,
    2,
    2,
    (1,),
    window_size=14,
    img_size=1024,
    prompt_embed_dim=32,
    mask_in_chans=4,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)


def random_hf_model(cfg: ModelConfig, seed: int = 0):
    """A transformers SamModel of this architecture with every tensor random (HF inits the rel-pos
    tables and pos_embed at zero, which would leave their mapping untested)."""
    from transformers import SamConfig, SamModel

    config = hf_config(cfg)
    config["mask_decoder_config"]["layer_norm_eps"] = 1e-6  # HF's default, not the official 1e-5
    torch.manual_seed(seed)
    model = SamModel(SamConfig(**{k: v for k, v in config.items() if k != "architectures"})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_weight = "norm" in name and name.endswith("weight")
            p.copy_(1 + 0.05 * torch.randn_like(p) if is_norm_weight else 0.05 * torch.randn_like(p))
    return model


def hf_forward(model, image, points=None, labels=None, box=None):
    """HF's whole forward: (image embeddings, multimask low-res logits (1, 3, h, w))."""
    with torch.no_grad():
        out = model(
            pixel_values=image,
            input_points=None if points is None else points[:, None],
            input_labels=None if labels is None else labels[:, None],
            input_boxes=None if box is None else box[:, None],
            multimask_output=True,
        )
        embeddings = model.get_image_embeddings(image)
    return embeddings, out.pred_masks[:, 0]


def compare(hf_model, ours, atol=1e-4):
    torch.manual_seed(1)
    image = torch.randn(1, 3, 1024, 1024)
    points, labels = torch.tensor([[[300.0, 400.0], [700.0, 120.0]]]), torch.tensor([[1, 0]])
    box = torch.tensor([[100.0, 200.0, 800.0, 900.0]])
    with torch.no_grad():
        emb = ours.image_encoder(image)
        ours_points, _ = ours.decode(emb, (1024, 1024), points=(points, labels), multimask_output=True)
        ours_box, _ = ours.decode(emb, (1024, 1024), boxes=box, multimask_output=True)
    hf_emb, hf_points = hf_forward(hf_model, image, points, labels)
    _, hf_box = hf_forward(hf_model, image, box=box)
    assert (emb - hf_emb).abs().max() <= atol
    assert ours_points.shape == hf_points.shape and (ours_points - hf_points).abs().max() <= atol
    assert (ours_box - hf_box).abs().max() <= atol
    assert hf_points.abs().max() > 10 * atol  # the logits are not trivially small


def test_hf_checkpoint_loads_and_matches_transformers(tmp_path):
    hf_model = random_hf_model(SMALL_1024)
    hf_model.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="eps 1e-06"):
        ours = basam.load_model("default", checkpoint=tmp_path / "hf")
    assert ours.cfg.decoder_norm_eps == 1e-6 and ours.cfg.img_size == 1024
    compare(hf_model, ours)
    # the safetensors file alone, beside its config.json, is the same checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = basam.load_model("default", checkpoint=tmp_path / "hf" / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(alone.state_dict().values(), ours.state_dict().values()))


def test_official_state_dict_saved_as_hf_opens_in_transformers(tmp_path, twins):
    _, ours = twins(SMALL_1024, seed=3)
    basam.save_model(ours, tmp_path / "hf", format="hf")
    hf_model = transformers.SamModel.from_pretrained(tmp_path / "hf").eval()
    assert hf_model.config.mask_decoder_config.layer_norm_eps == 1e-5  # the official eps travels
    compare(hf_model, ours)


def test_every_name_maps_onto_transformers():
    """Both directions of the name table cover exactly the real SamModel's parameters."""
    tiny = basam.MODEL_CONFIGS["tiny"]
    hf_keys = set(random_hf_model(tiny).state_dict()) - {"prompt_encoder.shared_embedding.positional_embedding"}
    ours = {hf_name(k) for k in basam.Sam(tiny).state_dict()}
    assert ours == hf_keys
    assert model_config_from_hf(hf_config(tiny)) == tiny  # the size's name comes back too


def test_basam_settings_and_slopes_travel_in_config(tmp_path):
    model = basam.load_model("tiny", attn="basam", bm_learnable=True)
    slope = model.image_encoder.blocks[1].attn.mode.slopes
    with torch.no_grad():
        slope.mul_(1.5)
    basam.save_model(model, tmp_path / "hf", format="hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["basam"]["attention"]["preset"] == "basam"
    back = basam.load_model(checkpoint=tmp_path / "hf")
    assert back.cfg == model.cfg and back.attn_cfg == model.attn_cfg
    assert torch.equal(back.image_encoder.blocks[1].attn.mode.slopes, slope)
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        assert torch.equal(back.image_encoder(x), model.image_encoder(x))


def test_hf_errors_are_one_line(tmp_path):
    basam.save_model(basam.load_model("tiny"), tmp_path / "hf", format="hf")
    with pytest.raises(CheckpointError, match="holds a tiny model, not vit_b"):
        basam.load_model("vit_b", checkpoint=tmp_path / "hf")
    # a weights file without its config.json: the size from its shapes, HF's default decoder eps
    (tmp_path / "alone").mkdir()
    shutil.copy(tmp_path / "hf" / "model.safetensors", tmp_path / "alone" / "weights.safetensors")
    with pytest.warns(UserWarning, match="eps 1e-06"):
        alone = basam.load_model("tiny", checkpoint=tmp_path / "alone" / "weights.safetensors")
    assert alone.cfg.name == "tiny" and alone.cfg.decoder_norm_eps == 1e-6
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["vision_config"]["use_rel_pos"] = False
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="use_rel_pos=False is not supported"):
        basam.load_model(checkpoint=tmp_path / "hf")
    adapted = basam.load_model("tiny")
    add_adapters(adapted, 4)
    with pytest.raises(ValueError, match="adapter/LoRA tensors"):
        basam.save_model(adapted, tmp_path / "adapted", format="hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="folder without a Hugging Face config.json"):
        basam.load_model("tiny", checkpoint=tmp_path / "empty")


def test_sharded_hf_checkpoint(tmp_path):
    hf_model = random_hf_model(basam.MODEL_CONFIGS["tiny"], seed=4)
    hf_model.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    with pytest.warns(UserWarning, match="eps 1e-06"):
        ours = basam.load_model("tiny", checkpoint=tmp_path / "hf")
    theirs = hf_model.state_dict()
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs[hf_name(name)]), name
