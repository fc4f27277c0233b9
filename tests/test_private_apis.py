"""basam's uses of private or version-bound APIs are optional: a torch (or Python) without them takes
the plain path and gives the same answers."""

import argparse
import types

import pytest
import torch

import basam
from basam.cli import train as train_cli
from basam.config import MODEL_CONFIGS
from basam.modeling import common
from basam.runtime import precision
from official import randomize

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fresh_probes():
    """The probes' cached answers dropped before and after, so each sees the torch of its test."""
    probes = (common.onednn_linear, precision.onednn_bf16, precision._full_range_runs)
    for probe in probes:
        probe.cache_clear()
    yield
    for probe in probes:
        probe.cache_clear()


class Without:
    """An operator namespace of torch.ops with one operator missing, as in a torch release without it."""

    def __init__(self, namespace, missing: str) -> None:
        self.namespace, self.missing = namespace, missing

    def __getattr__(self, name):
        if name == self.missing:
            raise AttributeError(f"no operator {name}")
        return getattr(self.namespace, name)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
def test_without_the_private_onednn_ops_the_encoder_gives_the_same_embeddings(fresh_probes, monkeypatch):
    model = randomize(basam.Sam(MODEL_CONFIGS["tiny"]), seed=4).eval()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    layer = model.image_encoder.blocks[0].mlp.lin1
    with torch.no_grad():
        assert common._fusable(layer, torch.randn(2, layer.in_features))  # the fused path is the one taken here
        fused = model.image_encoder(x)

    monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())  # neither _linear_pointwise nor the bf16 check
    common.onednn_linear.cache_clear()
    precision.onednn_bf16.cache_clear()
    assert common.onednn_linear() is None and precision.onednn_bf16() is False
    with torch.no_grad():
        assert not common._fusable(layer, torch.randn(2, layer.in_features))
        plain = model.image_encoder(x)
    assert plain.shape == fused.shape == (1, MODEL_CONFIGS["tiny"].prompt_embed_dim, 16, 16)
    assert (plain - fused).abs().max() <= 1e-5


def test_a_fused_linear_that_computes_something_else_is_not_used(fresh_probes, monkeypatch):
    """The probe checks what the operator computes, not only that it exists (a signature or
    semantics change between releases)."""
    real = torch.ops.mkldnn

    class Changed(Without):
        def __getattr__(self, name):
            if name == "_linear_pointwise":
                return lambda x, w, b, *rest: torch.nn.functional.linear(x, w, b) * 2
            return getattr(self.namespace, name)

    monkeypatch.setattr(torch.ops, "mkldnn", Changed(real, ""))
    assert common.onednn_linear() is None


def test_without_the_dynamic_int8_internals_int8_keeps_pytorchs_linear(fresh_probes, monkeypatch):
    assert precision._full_range_runs()  # this torch runs FullRangeLinear
    monkeypatch.setattr(torch.ops, "quantized", Without(torch.ops.quantized, "linear_dynamic"))
    precision._full_range_runs.cache_clear()
    assert not precision._full_range_runs() and not precision.int8_vnni()
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.auto_precision(torch.device("cpu")) == "fp32"  # 7-bit int8 is outside the masks' bound


def test_train_flags_reach_the_config_only_when_given():
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    assert vars(parser.parse_args([])) == {}
    given = vars(parser.parse_args(["--steps", "5", "--model", "tiny", "--no-flip", "--data", "synth:all"]))
    assert given == {"steps": 5, "model": "tiny", "flip": False, "data": ["synth:all"]}
