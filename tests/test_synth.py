"""The synthetic multi-resolution benchmark: determinism, shapes, cross-size consistency of the
masks, detail that grows with resolution, sub-pixel thin structures, the written layout and CLI."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from basam.data import synth, textures
from basam.data.synth import FAMILIES, make_scene, render, write_benchmark


def _down(mask: np.ndarray, f: int) -> np.ndarray:
    """Box-downsample a bool mask by f (area fraction >= 0.5), the way a dataset would be resized."""
    h, w = mask.shape
    return mask.reshape(h // f, f, w // f, f).mean(axis=(1, 3)) >= 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_bytes_and_different_seeds_differ(family):
    a = render(make_scene(3, family), 200, 320)
    b = render(make_scene(3, family), 200, 320)
    assert make_scene(3, family) == make_scene(3, family)
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert a.coverage.tobytes() == b.coverage.tobytes()
    c = render(make_scene(4, family), 200, 320)
    assert a.image.tobytes() != c.image.tobytes() and a.mask.tobytes() != c.mask.tobytes()


def test_deterministic_across_processes():
    """No per-process state (Python's salted hash, global RNG) leaks into a scene."""
    code = (
        "import hashlib; from basam.data.synth import make_scene, render; "
        "r = render(make_scene(7, 'lesion'), 120, 90); "
        "print(hashlib.sha256(r.image.tobytes() + r.mask.tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout
    r = render(make_scene(7, "lesion"), 120, 90)
    assert out == hashlib.sha256(r.image.tobytes() + r.mask.tobytes()).hexdigest() + "\n"


def test_occlusion_and_hand_built_scene():
    """Objects are drawn back to front; each mask is the visible part of its object."""
    red, blue = textures.Texture(((1, 0, 0), (1, 0, 0))), textures.Texture(((0, 0, 1), (0, 0, 1)))
    big = textures.SceneObject("big", (0.5, 0.5), (textures.Star(0.0, 0.0, 0.3),), red)
    small = textures.SceneObject("small", (0.5, 0.5), (textures.Star(0.0, 0.0, 0.1),), blue)
    scene = synth.Scene("salient", 0, textures.Texture(((0, 1, 0), (0, 1, 0))), (big, small), target=0)
    r = render(scene, 200, 200)
    yy, xx = np.mgrid[:200, :200] + 0.5
    rad = np.hypot(xx - 100, yy - 100)
    inner, ring = rad < 19, (rad > 21) & (rad < 59)
    assert r.masks[1][inner].all() and not r.masks[0][inner].any()  # covered part is not visible
    assert r.mask[ring].all() and not r.mask[rad > 61].any()
    assert abs(r.mask.sum() - np.pi * (60**2 - 20**2)) < 0.01 * np.pi * 60**2
    np.testing.assert_array_equal(r.image[100, 100], (0, 0, 255))
    np.testing.assert_array_equal(r.image[100, 60], (255, 0, 0))
    np.testing.assert_array_equal(r.image[5, 5], (0, 255, 0))
    for n in (37, 200):  # analytic coverage: its sum is the ring's area, edges are fractional
        c = render(scene, n, n).coverage
        assert abs(c.sum() / (np.pi * ((0.3 * n) ** 2 - (0.1 * n) ** 2)) - 1) < 1e-3
        assert ((c > 0.05) & (c < 0.95)).sum() > np.pi * 0.4 * n


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("hw", [(96, 96), (256, 256), (200, 320), (1024, 1024)])
def test_shapes_dtypes_and_target_contract(family, hw):
    scene = make_scene(1, family)
    r = render(scene, *hw)
    K = len(scene.objects)
    assert r.image.shape == (*hw, 3) and r.image.dtype == np.uint8
    assert r.mask.shape == hw and r.mask.dtype == bool
    assert r.masks.shape == (K, *hw) and r.masks.dtype == bool
    assert r.coverage.shape == hw and r.coverage.dtype == np.float32
    assert 0.0 <= r.coverage.min() and r.coverage.max() <= 1.0
    assert r.target == scene.target and 0 <= r.target < K
    np.testing.assert_array_equal(r.mask, r.masks[r.target])
    np.testing.assert_array_equal(r.mask, r.coverage >= 0.5)  # binary gt = coverage >= 0.5
    assert r.masks.sum(axis=0).max() <= 1  # visible masks never overlap
    assert 0 < r.mask.sum() < 0.6 * r.mask.size  # target present, not the image
    assert r.image.std() > 5  # something was drawn


@pytest.mark.parametrize("family", FAMILIES)
def test_targets_present_small_and_varied(family):
    fracs, counts = [], []
    for seed in range(10):
        scene = make_scene(seed, family)
        fracs.append(render(scene, 96, 96).mask.mean())
        counts.append(len(scene.objects))
    assert min(fracs) > 0 and max(fracs) < 0.5
    assert max(fracs) > 2 * min(fracs)  # object size varies
    assert max(counts) >= 2  # several objects per scene


@pytest.mark.parametrize("family", FAMILIES)
def test_mask_consistent_across_sizes(family):
    """The mask at 1024 box-downsampled to 256 matches the mask rendered at 256."""
    for seed in range(3):
        scene = make_scene(seed, family)
        hi, lo = render(scene, 1024, 1024), render(scene, 256, 256)
        assert _iou(_down(hi.mask, 4), lo.mask) >= 0.97, (family, seed)
        # the anti-aliased coverage is an area estimate: its box average agrees even better
        area = hi.coverage.reshape(256, 4, 256, 4).mean(axis=(1, 3))
        assert _iou(area >= 0.5, lo.mask) >= 0.98, (family, seed)


def test_mask_consistent_2048_vs_512_and_non_square():
    scene = make_scene(0, "thin")
    assert _iou(_down(render(scene, 2048, 2048).mask, 4), render(scene, 512, 512).mask) >= 0.97
    scene = make_scene(2, "lesion")
    assert _iou(_down(render(scene, 640, 1024).mask, 4), render(scene, 160, 256).mask) >= 0.97


def _lap_energy(rgb: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image: energy at the finest scales."""
    return float((ndimage.laplace(rgb.astype(np.float32).mean(axis=2)) ** 2).mean())


@pytest.mark.parametrize("family", FAMILIES)
def test_high_resolution_adds_detail_not_blur(family):
    scene = make_scene(0, family)
    hi, lo = render(scene, 1024, 1024).image, render(scene, 256, 256).image
    up = np.asarray(Image.fromarray(lo).resize((1024, 1024), Image.BICUBIC))
    assert _lap_energy(hi) > 2 * _lap_energy(up)
    # ...while the coarse content is the same scene
    small = np.asarray(Image.fromarray(hi).resize((64, 64), Image.BOX), np.float32)
    ref = np.asarray(Image.fromarray(lo).resize((64, 64), Image.BOX), np.float32)
    assert np.abs(small - ref).mean() < 12
    # the textures themselves (not only sharper edges): float renders, no uint8 rounding
    for seed in (0, 1):
        scene = make_scene(seed, family)
        texs = [scene.objects[scene.target].texture] + [scene.background] * (scene.background.pattern != "photo")
        for tex in texs:
            a = textures.render_texture(tex, textures.make_frame(1024, 1024), slice(0, 1024), slice(0, 1024))
            b = textures.render_texture(tex, textures.make_frame(256, 256), slice(0, 256), slice(0, 256))
            grey = Image.fromarray(b.mean(axis=2), mode="F").resize((1024, 1024), Image.BICUBIC)
            assert _lap_energy(a) > 3 * _lap_energy(np.asarray(grey)[..., None])


def test_thin_wires_are_subpixel_at_96_and_present_at_1024():
    found = 0
    for seed in range(3):
        scene = make_scene(seed, "thin")
        for k, obj in enumerate(scene.objects):
            if obj.name != "wire":
                continue
            as_target = dataclasses.replace(scene, target=k)
            lo, hi = render(as_target, 96, 96), render(as_target, 1024, 1024)
            assert lo.coverage.sum() > 3  # drawn, faintly ...
            assert lo.mask.sum() < 0.2 * lo.coverage.sum()  # ... but below the mask threshold
            assert hi.mask.sum() > 0.9 * hi.coverage.sum() > 0  # resolved at high resolution
            assert (
                lo.image
                != render(
                    dataclasses.replace(scene, objects=scene.objects[:k] + scene.objects[k + 1 :], target=0), 96, 96
                ).image
            ).any()
            found += 1
    assert found >= 3


def test_thin_targets_are_thin_or_perforated():
    """DIS-like targets: most of a tree, grille or wheel lies within 3 px of its edge at 256 px;
    a perforated target has holes."""
    kinds = set()
    for seed in range(12):
        scene = make_scene(seed, "thin")
        r = render(scene, 256, 256)
        kind = scene.objects[scene.target].name
        kinds.add(kind)
        if kind == "perforated":
            assert ndimage.label(ndimage.binary_fill_holes(r.mask) & ~r.mask)[1] >= 3, seed
        else:
            assert ndimage.binary_erosion(r.mask, iterations=3).sum() < 0.5 * r.mask.sum(), seed
    assert kinds == {"tree", "grille", "wheel", "perforated"}


def test_make_scene_and_render_reject_bad_input():
    with pytest.raises(ValueError, match="family"):
        make_scene(0, "nope")
    with pytest.raises(ValueError, match="seed"):
        make_scene(-1, "salient")
    with pytest.raises(ValueError, match="size"):
        render(make_scene(0, "salient"), 0, 10)


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_write_benchmark_layout_and_splits(tmp_path):
    out = write_benchmark(tmp_path / "b", 2, size=(96, 128), families=("salient", "thin"), split="test")
    assert out == tmp_path / "b"
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == sorted(p.name for p in (out / "masks").iterdir())
    assert images == ["salient_test_0000.png", "salient_test_0001.png", "thin_test_0000.png", "thin_test_0001.png"]
    for name in images:
        im, gt = _read(out / "images" / name), _read(out / "masks" / name)
        assert im.shape == (96, 128, 3) and gt.shape == (96, 128) and gt.dtype == np.uint8
        assert set(np.unique(gt)) == {0, 255}
    write_benchmark(tmp_path / "b", 2, size=(96, 128), families=("salient",), split="train")
    a, b = _read(out / "images" / "salient_test_0000.png"), _read(out / "images" / "salient_train_0000.png")
    assert a.shape == b.shape and (a != b).any()
    seeds = {synth.scene_seed(0, s, i) for s in ("train", "val", "test") for i in range(100)}
    assert len(seeds) == 300  # splits never share a scene
    assert synth.scene_seed(1, "test", 0) != synth.scene_seed(0, "test", 0)


def test_write_benchmark_random_sizes(tmp_path):
    sizes = [synth._random_size(synth.scene_seed(0, "test", i), "lesion") for i in range(200)]
    assert all(96 <= min(s) and max(s) <= 2048 for s in sizes)
    assert len(set(sizes)) > 100 and any(h != w for h, w in sizes) and any(h == w for h, w in sizes)
    out = write_benchmark(tmp_path, 1, families=("lesion",), seed=5)
    (img,) = (out / "images").iterdir()
    assert _read(img).shape[:2] == synth._random_size(synth.scene_seed(5, "test", 0), "lesion")


def test_cli_synth(tmp_path, capsys):
    from basam.cli import main
    from basam.cli import synth as synth_command

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--n",
                "1",
                "--size",
                "96x120",
                "--families",
                "lesion,camouflaged",
                "--split",
                "val",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["camouflaged_val_0000.png", "lesion_val_0000.png"]
    assert main(["synth", "--out", str(tmp_path), "--families", "cats"]) == 2
    assert "cats" in capsys.readouterr().err
    p = argparse.ArgumentParser()
    synth_command.add_arguments(p)
    with pytest.raises(ValueError, match="--size"):
        synth_command.run(p.parse_args(["--out", str(tmp_path), "--size", "big"]))
