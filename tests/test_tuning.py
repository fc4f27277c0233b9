"""Freezing, adapters and LoRA (basam.training.tuning) on the tiny model."""

import pytest
import torch

import basam
from basam.training import tuning

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(attn="sam", **kw):
    torch.manual_seed(0)
    return basam.load_model("tiny", attn=attn, **kw)


def _inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 80, generator=g)
    boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 2.0, 70.0, 60.0]])
    return images, boxes


@torch.no_grad()
def _run(model):
    images, boxes = _inputs()
    return model(images, boxes=boxes, multimask_output=False)


def _randomise(model, which):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if which in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("mode", tuning.TUNE_MODES)
def test_added_modules_start_as_identity_and_freezing_follows_the_rule(mode):
    model = _model()
    before = _run(model)
    counts = tuning.configure(model, mode)
    after = _run(model)
    for a, b in zip(before, after):
        assert torch.equal(a, b)  # zero-initialised adapter `up` / LoRA `B`: exactly the same model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("mask_decoder.", "image_encoder.")) for n in trainable)
    assert {n for n, _ in model.named_parameters() if n.startswith("mask_decoder.")} <= trainable
    assert not any(n.startswith("prompt_encoder.") for n in trainable)
    encoder = {n for n in trainable if n.startswith("image_encoder.")}
    expected = {
        "full": lambda n: True,
        "decoder": lambda n: False,
        "adapter": lambda n: ".adapter." in n,
        "lora": lambda n: ".lora_" in n,
    }[mode]
    assert encoder == {n for n, _ in model.named_parameters() if n.startswith("image_encoder.") and expected(n)}
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert counts["trainable"] + counts["frozen"] == counts["total"]


def test_trainable_counts_of_the_tiny_model():
    counts = {}
    for mode in tuning.TUNE_MODES:
        counts[mode] = tuning.configure(_model(), mode)["trainable"]
    decoder = counts["decoder"]
    # tiny: width 64, 4 blocks; adapters 64→16→64 twice per block; LoRA rank 4 on qkv (64→192) and proj (64→64)
    assert counts["adapter"] - decoder == 4 * 2 * (64 * 16 + 16 + 16 * 64 + 64)
    assert counts["lora"] - decoder == 4 * (4 * 64 + 192 * 4 + 4 * 64 + 64 * 4)
    assert counts["full"] > counts["adapter"] > counts["lora"] > decoder > 0


def test_learnable_slopes_are_trained_in_any_mode_and_need_the_bias():
    model = _model("basam", bm_learnable=True)
    tuning.configure(model, "decoder", learnable_slopes=True)
    slopes = [n for n, p in model.named_parameters() if p.requires_grad and n.endswith(".attn.mode.slopes")]
    assert slopes == ["image_encoder.blocks.1.attn.mode.slopes", "image_encoder.blocks.3.attn.mode.slopes"]
    with pytest.raises(ValueError, match="learnable-slopes"):
        tuning.configure(_model("sam"), "decoder", learnable_slopes=True)
    with pytest.raises(ValueError, match="unknown tune mode"):
        tuning.configure(_model(), "prefix")


def test_lora_merges_into_a_plain_sam_with_the_same_outputs(tmp_path):
    model = _model()
    tuning.configure(model, "lora", lora_rank=2, lora_alpha=4.0)
    _randomise(model, ".lora_")
    adapted = _run(model)
    exported = tuning.export_copy(model)
    assert set(exported.state_dict()) == set(_model().state_dict())  # no LoRA keys left
    merged = _run(exported)
    assert not torch.allclose(adapted[0], _run(_model())[0], atol=1e-4)  # the update does something
    for a, b in zip(adapted, merged):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    basam.save_model(exported, tmp_path / "lora.safetensors")
    loaded = basam.load_model("tiny", checkpoint=tmp_path / "lora.safetensors")
    for a, b in zip(merged, _run(loaded)):
        assert torch.equal(a, b)


def test_adapters_travel_in_the_export(tmp_path):
    model = _model("basam")
    tuning.configure(model, "adapter")
    _randomise(model, ".adapter.")
    adapted = _run(model)
    copy = tuning.export_copy(model)
    _randomise(model, ".adapter.up.")  # the copy's hooks use the copy's adapters, not the original's
    for a, b in zip(adapted, _run(copy)):
        assert torch.equal(a, b)
    path = basam.save_model(copy, tmp_path / "adapter.safetensors")
    loaded = basam.load_model("tiny", path)
    assert loaded.attn_cfg.preset == "basam"
    for a, b in zip(adapted, _run(loaded)):
        assert torch.equal(a, b)
    plain = basam.load_model("tiny", basam.save_model(_model(), tmp_path / "plain.safetensors"))
    assert not any(".adapter." in k for k in plain.state_dict())
