"""SAM's training recipe in `basam train`: the multimask min-loss, refinement clicks from the error
region, prompts on any object of a scene, a trainable prompt encoder, and training checkpoints
(step_*.pt, best.pt) that open with `basam.load_model`."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import basam
from basam.cli import main as cli_main
from basam.formats.checkpoint import CheckpointError
from basam.training import data as td
from basam.training.loss import error_points, segmentation_loss
from basam.training.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_multimask_min_loss_sends_the_mask_gradient_only_to_the_best_output():
    target = torch.zeros(1, 16, 16)
    target[:, 4:12, 4:12] = 1
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    good = torch.where(target > 0, 4.0, -4.0)[:, None]  # (1, 1, 16, 16): nearly the target
    low = torch.cat([torch.zeros_like(good), good * 0.5, -good]).permute(1, 0, 2, 3).clone().requires_grad_()
    iou = torch.tensor([[0.3, 0.6, 0.9]], requires_grad=True)
    loss, parts = segmentation_loss(low, iou, target, valid)
    loss.sum().backward()
    per_output = low.grad.abs().sum((0, 2, 3))
    assert per_output[1] > 0 and per_output[0] == 0 and per_output[2] == 0
    assert (iou.grad != 0).all()  # the IoU head learns on all three
    single, single_parts = segmentation_loss(low[:, 1:2].detach(), iou[:, 1:2].detach(), target, valid)
    torch.testing.assert_close(parts[:, :2], single_parts[:, :2])  # the mask loss is the best output's
    # true IoUs 0 (all-zero logits predict nothing), 1, 0 → MSE mean over the three outputs
    torch.testing.assert_close(parts[:, 2], torch.tensor([(0.3**2 + 0.4**2 + 0.9**2) / 3]))


def test_refinement_clicks_fall_in_the_error_region_with_the_right_label():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 12, 12, generator=g) > 0.5
    logits = torch.randn(2, 1, 12, 12, generator=g)  # same size as the target: the error region is exact
    valid = torch.ones(2, 12, 12, dtype=torch.bool)
    valid[1, :, 9:] = False  # padding never receives a click
    pred = logits[:, 0] > 0
    fn, fp = target & ~pred & valid, pred & ~target & valid
    n = (fn | fp).flatten(1).sum(1)
    for b in range(2):  # u = (k + ½)/n visits every error pixel exactly once
        seen = set()
        for k in range(int(n[b])):
            u = torch.full((2,), (k + 0.5) / float(n[b]))
            xy, labels = error_points(logits, target.float(), valid, u)
            x, y = (int(v) for v in xy[b, 0])
            assert (labels[b, 0] == 1 and fn[b, y, x]) or (labels[b, 0] == 0 and fp[b, y, x])
            seen.add((x, y))
        assert len(seen) == n[b]
    perfect = torch.where(target, 5.0, -5.0)[:, None]
    assert (error_points(perfect, target.float(), valid, torch.zeros(2))[1] == -1).all()  # nothing to fix


def test_any_object_prompts_other_objects_and_the_data_stays_a_function_of_seed_and_step():
    kw = dict(
        specs=[("synth:salient,thin", 1.0)],
        resolutions=[64],
        kinds=["point", "box"],
        seed=1,
        global_batch=8,
        refine_iters=2,
    )
    target_only, anyobj = td.TrainData(**kw), td.TrainData(**kw, any_object=1.0)
    items = [(anyobj[(s, j)], target_only[(s, j)]) for s in range(3) for j in range(8)]
    assert any(not torch.equal(a.target, t.target) for a, t in items)
    again = td.TrainData(**kw, any_object=1.0)[(2, 5)]
    assert torch.equal(again.target, anyobj[(2, 5)].target) and torch.equal(again.refine_u, anyobj[(2, 5)].refine_u)
    assert all(a.refine_u.shape == (2,) and ((0 <= a.refine_u) & (a.refine_u < 1)).all() for a, _ in items)
    assert all(a.kind != "point" or a.points.shape == (1, 2) for a, _ in items)


def test_a_prompt_free_example_always_asks_for_the_scene_target():
    kw = dict(specs=[("synth:salient,thin", 1.0)], resolutions=[64], kinds=["none", "point"], seed=2, global_batch=8)
    target_only, anyobj = td.TrainData(**kw), td.TrainData(**kw, any_object=1.0)
    items = [(anyobj[(s, j)], target_only[(s, j)]) for s in range(4) for j in range(8)]
    free = [(a, t) for a, t in items if a.kind == "none"]
    assert free and all(torch.equal(a.target, t.target) and torch.equal(a.image, t.image) for a, t in free)
    assert any(not torch.equal(a.target, t.target) for a, t in items if a.kind == "point")


@pytest.fixture(scope="module")
def sam_run(tmp_path_factory):
    """A few steps of the whole recipe on the tiny model, with validation under bf16 autocast as the
    default model was trained, so best.pt exists."""
    out = tmp_path_factory.mktemp("sam")
    cfg = TrainConfig(
        model="tiny",
        data=["synth:all"],
        resolution=[64],
        prompt=["point", "box", "points"],
        steps=4,
        batch_size=4,
        lr=3e-3,
        warmup=1,
        multimask=True,
        refine_iters=2,
        any_object=0.5,
        train_prompt_encoder=True,
        tune="full",
        bf16="on",
        val_every=2,
        val_size=2,
        checkpoint_every=2,
        out=str(out / "run"),
        progress=False,
    )
    return out / "run", train(cfg)


def test_the_recipe_trains_multimask_outputs_and_prompt_encoder_end_to_end(sam_run):
    out, summary = sam_run
    torch.manual_seed(0)  # the run's random init
    before, after = basam.load_model("tiny").state_dict(), load_file(out / "model.safetensors")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    for k in (
        "mask_decoder.output_hypernetworks_mlps.2.layers.0.weight",  # a multimask output
        "prompt_encoder.point_embeddings.1.weight",  # a positive click
        "prompt_encoder.mask_downscaling.0.weight",
    ):  # the mask_input path of refinement
        assert k in moved, k
    assert np.isfinite(summary["final_loss"])


def test_training_checkpoints_open_with_load_model_predict_and_eval(sam_run, tmp_path):
    out, _ = sam_run
    export = load_file(out / "model.safetensors")
    last = basam.load_model("tiny", checkpoint=out / "checkpoints" / "step_0000004.pt").state_dict()
    assert set(last) == set(export) and all(torch.equal(last[k], export[k]) for k in export)
    best = basam.load_model(checkpoint=out / "checkpoints" / "best.pt")
    assert best.cfg.name == "tiny"
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    predictor = basam.Predictor(best, resolution=64)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=np.array([[30, 20]]), point_labels=np.array([1]))
    assert masks.shape == (3, 48, 64) and scores.shape == (3,)
    assert (
        cli_main(
            [
                "eval",
                "--data",
                "synth:salient",
                "--n",
                "1",
                "--resolution",
                "64",
                "--model",
                "tiny",
                "--checkpoint",
                str(out / "checkpoints" / "best.pt"),
                "--prompt",
                "box",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    assert (tmp_path / "eval" / "summary.json").is_file()


def test_a_checkpoint_whose_base_is_gone_says_so(tmp_path):
    torch.manual_seed(5)
    base = basam.save_model(basam.load_model("tiny"), tmp_path / "base.safetensors")
    cfg = TrainConfig(
        model="tiny",
        checkpoint=str(base),
        data=["synth:lesion"],
        resolution=[64],
        steps=1,
        batch_size=2,
        tune="lora",
        out=str(tmp_path / "run"),
        progress=False,
    )
    train(cfg)
    step = tmp_path / "run" / "checkpoints" / "step_0000001.pt"
    merged = basam.load_model("tiny", checkpoint=step).state_dict()
    export = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.allclose(merged[k], export[k]) for k in export)  # LoRA merged as in the export
    torch.manual_seed(6)  # another base at the same path: the frozen weights no longer match
    base.unlink()
    basam.save_model(basam.load_model("tiny"), base)
    with pytest.raises(CheckpointError, match="frozen base weights differ"):
        basam.load_model("tiny", checkpoint=step)
    base.unlink()
    with pytest.raises(CheckpointError, match="base checkpoint .*base.safetensors, which is missing"):
        basam.load_model("tiny", checkpoint=step)
