"""`basam train` on the tiny model: learning per tune mode, freezing, exact resume, atomic
checkpoints, 2-process DDP against 1 process, the mixture sampler, the CLI contract."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import basam
from basam.cli import main as cli_main
from basam.training import data as td
from basam.training import tuning
from basam.training.train import TrainConfig, train

BIN = Path(sys.executable).parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """8 synthetic scenes (72×96) in the generic layout: a real reader, files on disk."""
    from basam.data.synth import write_benchmark

    return f"generic:{write_benchmark(tmp_path_factory.mktemp('data'), 2, size=(72, 96), split='train')}"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random tiny model saved as a file, so the frozen part can be compared with its source."""
    torch.manual_seed(123)
    return basam.save_model(basam.load_model("tiny"), tmp_path_factory.mktemp("base") / "base.safetensors")


def _cfg(dataset, out, **kw):
    args = dict(
        model="tiny",
        data=[dataset],
        resolution=[64],
        steps=4,
        batch_size=4,
        lr=3e-3,
        warmup=2,
        out=str(out),
        progress=False,
    )
    return TrainConfig(**{**args, **kw})


def _losses(out):
    return [float(r["loss"]) for r in csv.DictReader(open(Path(out) / "log.csv")) if r["loss"]]


@pytest.mark.parametrize("mode,slopes", [("full", False), ("decoder", False), ("adapter", True), ("lora", True)])
def test_each_mode_learns_and_leaves_frozen_weights_bit_identical(dataset, base, tmp_path, mode, slopes):
    attn = "basam" if slopes else "sam"
    # Offset 0: the preset's bias starts beyond the trained distances, and 64 px is below them.
    overrides = {"bm_offset": "0"} if slopes else {}
    cfg = _cfg(
        dataset,
        tmp_path,
        tune=mode,
        steps=12,
        lr=1e-2,
        warmup=1,
        checkpoint=str(base),
        attn=attn,
        learnable_slopes=slopes,
        attn_overrides=overrides,
    )
    summary = train(cfg)
    losses = _losses(tmp_path)
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.92 * np.mean(losses[:3]), losses

    before, after = load_file(base), load_file(tmp_path / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    moved = {
        "full": ("image_encoder.", "mask_decoder."),
        "decoder": ("mask_decoder.",),
        "adapter": ("mask_decoder.",),
        "lora": ("mask_decoder.", ".attn.qkv.", ".attn.proj."),
    }[mode]
    for k in before:  # frozen: bit-identical; LoRA moves qkv/proj only through the merge
        if not any(m in k for m in moved):
            assert k not in changed, k
    assert any(k.startswith("mask_decoder.") for k in changed)
    if mode == "full":
        assert any(k.startswith("image_encoder.") for k in changed)
    if mode == "lora":
        assert any(".attn.qkv." in k for k in changed)
    if mode == "adapter":
        assert any(k.endswith("adapter.up.weight") and after[k].abs().sum() > 0 for k in after)
    if slopes:  # trained, exported, and loaded back as parameters
        start = basam.load_model("tiny", attn=attn, bm_learnable=True).image_encoder.blocks[1].attn.mode.slopes
        assert torch.allclose(start, torch.tensor([2.0**-6, 2.0**-10]))  # ALiBi's for 2 heads, × 0.25
        assert not torch.allclose(after["image_encoder.blocks.1.attn.mode.slopes"], start, rtol=1e-3, atol=0)
    model = basam.load_model("tiny", tmp_path / "model.safetensors")
    assert model.attn_cfg.preset == attn and model.attn_cfg.bm_learnable == slopes
    assert summary["parameters"]["trainable"] == tuning.count_parameters(_configured(mode, attn, slopes))["trainable"]


def _configured(mode, attn, slopes):
    model = basam.load_model("tiny", attn=attn, **({"bm_learnable": True} if slopes else {}))
    tuning.configure(model, mode, slopes)
    return model


@pytest.mark.subprocess
def test_kill_then_resume_reproduces_the_uninterrupted_run_exactly(dataset, tmp_path):
    args = [
        "--model",
        "tiny",
        "--data",
        dataset,
        "--tune",
        "adapter",
        "--attn",
        "basam",
        "--learnable-slopes",
        "--bm-offset",
        "0",
        "--resolution",
        "64,80",
        "--prompt",
        "box,center,none,points",
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--accum",
        "2",
        "--lr",
        "1e-3",
        "--warmup",
        "2",
        "--multimask",
        "--refine-iters",
        "1",
        "--no-progress",
    ]
    # uninterrupted, in this process (a checkpoint every 2 steps, the last 2 kept)
    assert cli_main(["train", *args, "--checkpoint-every", "2", "--keep-last", "2", "--out", str(tmp_path / "u")]) == 0
    kept = sorted(p.name for p in (tmp_path / "u" / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_0000004.pt", "step_0000006.pt"]
    # killed (SIGKILL) in a subprocess once it has checkpointed step 2, then resumed here
    killed = ["train", *args, "--checkpoint-every", "1", "--out", str(tmp_path / "k")]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([str(BIN / "basam"), *killed], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (tmp_path / "k" / "checkpoints" / "step_0000002.pt").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k" / "model.safetensors").exists(), "finished before the kill: not a test"
    assert cli_main([*killed, "--resume"]) == 0
    u, k = load_file(tmp_path / "u" / "model.safetensors"), load_file(tmp_path / "k" / "model.safetensors")
    assert all(torch.equal(u[n], k[n]) for n in u)
    assert _losses(tmp_path / "u") == _losses(tmp_path / "k")  # rows after the checkpoint rewritten, not appended


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(dataset, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def failing_save(obj, f, *a, **kw):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: half a file, then the disk fills up
            Path(f).write_bytes(b"PK\x03\x04 partial")
            raise OSError("No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    cfg = _cfg(dataset, tmp_path, tune="decoder", steps=3, checkpoint_every=1, batch_size=2)
    with pytest.raises(OSError, match="No space"):
        train(cfg)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["step_0000001.pt"]  # no step 2, no temporary left behind
    assert torch.load(tmp_path / "checkpoints" / "step_0000001.pt", weights_only=True)["data"]["step"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert (
        train(_cfg(dataset, tmp_path, tune="decoder", steps=3, checkpoint_every=1, batch_size=2, resume=True))["steps"]
        == 3
    )
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "log.csv"))] == ["1", "2", "3"]


@pytest.mark.torchrun
def test_two_ddp_processes_match_one_process_with_the_same_global_batch(dataset, tmp_path, free_port):
    common = [
        "--model",
        "tiny",
        "--data",
        dataset,
        "--tune",
        "lora",
        "--attn",
        "basam",
        "--learnable-slopes",
        "--bm-offset",
        "0",
        "--resolution",
        "64",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--prompt",
        "box,point,none",
        "--lr",
        "1e-3",
        "--warmup",
        "1",
        "--multimask",
        "--refine-iters",
        "1",
        "--train-prompt-encoder",
        "--no-progress",
    ]
    run = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            "-m",
            "basam.cli",
            "train",
            *common,
            "--out",
            str(tmp_path / "ddp"),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # only rank 0 writes
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    assert len(_losses(tmp_path / "ddp")) == 3
    assert cli_main(["train", *common, "--accum", "2", "--out", str(tmp_path / "one")]) == 0
    a, b = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    np.testing.assert_allclose(_losses(tmp_path / "ddp"), _losses(tmp_path / "one"), rtol=1e-5)


def test_the_mixture_sampler_respects_its_weights():
    sampler = td.MixtureSampler([5, None, 7], [1.0, 2.0, 5.0], seed=3)
    draws = [d for step in range(40) for d in sampler.draw(step, 200)]
    counts = np.bincount([s for s, _ in draws], minlength=3) / len(draws)
    np.testing.assert_allclose(counts, [1 / 8, 2 / 8, 5 / 8], atol=0.015)
    assert all(0 <= i < 5 for s, i in draws if s == 0) and all(0 <= i < 7 for s, i in draws if s == 2)
    assert len({i for s, i in draws if s == 1}) > 1000  # the endless synthetic source
    assert sampler.draw(7, 50) == sampler.draw(7, 50) != sampler.draw(8, 50)  # a function of (seed, step)
    assert td.parse_data(["synth:salient,thin@3", "duts:/d@0.5,generic:/g"]) == [
        ("synth:salient,thin", 3.0),
        ("duts:/d", 0.5),
        ("generic:/g", 1.0),
    ]


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    gt = np.zeros((60, 80), np.uint8)
    gt[10:30, 5:70] = 255
    gt[40:55, 60:75] = 200
    image = np.repeat(gt[..., None], 3, axis=2)
    for _ in range(20):
        im, g = td.augment(image, gt, rng, flip=True, min_scale=0.5)
        assert np.array_equal(im[..., 0], g) and (g > 127).any()
    ex = td.make_example(image, gt, 128, "box", rng, 0.0, 1)
    assert ex.image.shape == (3, 128, 128) and ex.valid[:96].all() and not ex.valid[96:].any()
    torch.testing.assert_close(ex.box, torch.tensor([5.0, 10.0, 74.0, 54.0]) * 1.6)  # tight box, model pixels
    assert ex.target[16:48, 8:112].all() and ex.target[96:].sum() == 0


def test_synth_data_yaml_config_validation_and_resolved_config(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(
        "data: synth:salient,thin\nsteps: 5\nbatch-size: 2\nresolution: 64\nval_every: 2\nval_size: 2\ntune: lora\n"
    )
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "train",
                "--model",
                "tiny",
                "--config",
                str(tmp_path / "run.yaml"),
                "--steps",
                "2",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["steps"] == 2 and resolved["batch_size"] == 2 and resolved["tune"] == "lora"  # flag > file
    assert resolved["data"] == ["synth:salient", "thin"] and resolved["resolution"] == [64]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["step"] for r in rows] == ["0", "1", "2"] and rows[1]["val_mIoU"] == ""
    assert rows[0]["loss"] == "" and all(0 <= float(rows[k]["val_mIoU"]) <= 1 for k in (0, 2))  # 0: as loaded
    assert (out / "checkpoints" / "best.pt").is_file()
    assert "trainable parameters 46,752 of 328,931" in capsys.readouterr().out


def test_windows_scaled_is_trained_through_and_recorded(tmp_path):
    """`basam train --windows scaled`: the grown windows take part in training, and the run's
    checkpoint and export both load with them."""
    losses = {}
    for windows in ("fixed", "scaled"):
        assert (
            cli_main(
                [
                    "train",
                    "--model",
                    "tiny",
                    "--data",
                    "synth:salient",
                    "--resolution",
                    "128",
                    "--steps",
                    "1",
                    "--batch-size",
                    "2",
                    "--tune",
                    "full",
                    "--windows",
                    windows,
                    "--no-progress",
                    "--out",
                    str(tmp_path / windows),
                ]
            )
            == 0
        )
        losses[windows] = _losses(tmp_path / windows)
    assert losses["fixed"] != losses["scaled"]  # 128 px: 2-token windows instead of 4
    out = tmp_path / "scaled"
    step = next((out / "checkpoints").glob("step_*.pt"))
    assert torch.load(step, weights_only=True)["basam"]["attention"]["windows"] == "scaled"
    for path in (step, out / "model.safetensors"):
        assert basam.load_model("tiny", checkpoint=path).image_encoder.windows == "scaled"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--data", "duts:/no/such/dir"], "does not exist"),
        (["--tune", "prefix"], "unknown tune mode"),
        (["--resume"], "no checkpoint"),
        (["--learnable-slopes"], "learnable-slopes"),
        (["--resolution", "native"], "fixed sizes"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(dataset, tmp_path, capsys, extra, message):
    args = ["train", "--model", "tiny", "--data", dataset, "--steps", "1", "--out", str(tmp_path), *extra]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("basam train: error:") and message in err and "\n" not in err
