"""vit_t's inference layout (channels-last, BatchNorm folded into the convolutions) against the
modules run as written (NCHW, convolution then BatchNorm)."""

import pytest
import torch

import basam
from basam.modeling.tiny_vit import ConvBN, TinyViT
from basam.runtime.precision import set_precision

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vit_t():
    model = basam.load_model("vit_t").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics away from the identity, so that folding is exercised
        for m in model.image_encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + torch.randn(m.num_features, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def written(encoder, x, **kwargs):
    ConvBN.fold, TinyViT.channels_last = False, False
    try:
        return encoder(x, **kwargs)
    finally:
        ConvBN.fold, TinyViT.channels_last = True, True


@pytest.mark.parametrize("hw, windows", [((256, 256), "fixed"), ((192, 320), "scaled")])
def test_inference_layout_gives_the_written_modules_outputs(vit_t, hw, windows):
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = vit_t.image_encoder(x, windows=windows)
        reference = written(vit_t.image_encoder, x, windows=windows)
    assert fast.is_contiguous() and fast.shape == reference.shape
    assert (fast - reference).abs().max() <= 1e-5
    assert reference.abs().max() > 0.1


def test_training_mode_keeps_batch_statistics(vit_t):
    import copy

    block = copy.deepcopy(vit_t.image_encoder.layers[0].blocks[0].conv1).train()
    with torch.no_grad():
        y = block(torch.randn(2, 64, 8, 8) * 3 + 1)
    # batch statistics: each channel's mean over the batch is the BatchNorm's bias, whatever the running ones
    torch.testing.assert_close(y.mean((0, 2, 3)), block.bn.bias, rtol=0, atol=1e-4)


def test_bf16_weights_fold_too(vit_t):
    import copy

    model = copy.deepcopy(vit_t)
    set_precision(model, "bf16")
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast, reference = model.image_encoder(x), written(model.image_encoder, x)
    assert (fast - reference).abs().max() <= 0.05 * reference.abs().max()
