"""The release as a user meets it: `python -m build` makes a wheel and an sdist that carry the embedded
model, the page and the kernel sources, with version ranges (no exact pins) for the runtime
requirements; the wheel, installed (not editable) into a fresh virtual environment that already holds
older numpy, pillow, scipy and matplotlib releases, keeps them and runs `basam predict` on the
bundled photo, giving the mask this checkout gives."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import basam
from basam.formats.checkpoint import ASSETS

pytestmark = [pytest.mark.wheel, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[1]
# releases older than the ones CI runs, installed before the wheel; pip must keep them
OLDER = {"numpy": "2.2.6", "pillow": "11.3.0", "scipy": "1.15.3", "matplotlib": "3.10.3"}
SHIPPED = [
    "assets/default.safetensors",
    "assets/sample.jpg",
    "serve/static/index.html",
    "serve/static/app.js",
    "serve/static/style.css",
    "runtime/kernels/relpos_attention.cpp",
    "runtime/kernels/bf16_tiles.h",
]
POINT = (192, 192)  # the centre of the 384×384 photo


def clean_env() -> dict:
    """The environment without this checkout on the path nor pip settings that would change what
    pip resolves (the user's pip configuration, the local wheel folder, stays)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)
    wheels, sdists = list(out.glob("basam-*.whl")), list(out.glob("basam-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0], sdists[0]


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv (no system site-packages): torch, the older releases, then the wheel."""
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", home / "env"], cwd=home)
    pip = [home / "env" / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile"]
    run([*pip, f"torch=={torch.__version__.split('+')[0]}", *(f"{n}=={v}" for n, v in OLDER.items())], cwd=home)
    run([*pip, dist[0]], cwd=home)
    yield home / "env" / "bin"
    shutil.rmtree(home, ignore_errors=True)  # about 1 GB, mostly torch


def test_the_wheel_and_sdist_carry_the_model_page_and_kernel_sources(dist):
    wheel, sdist = dist
    version = basam.__version__
    assert wheel.name.startswith(f"basam-{version}-") and sdist.name == f"basam-{version}.tar.gz"
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    in_sdist = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    for path in SHIPPED:
        assert f"basam/{path}" in in_wheel, path
        assert f"src/basam/{path}" in in_sdist, path
    assert "CHANGELOG.md" in in_sdist and "constraints.txt" not in in_wheel


def test_the_wheel_requires_ranges_not_pins(dist):
    metadata = zipfile.ZipFile(dist[0]).read(f"basam-{basam.__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {basam.__version__}\n" in metadata
    runtime = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in runtime} >= {"torch", "numpy", "pillow", "scipy"}
    pinned = [r for r in runtime if re.search(r"===?|~=|<", r)]
    assert not pinned, f"exact pins or upper bounds in the runtime requirements: {pinned}"


def test_installed_beside_older_releases_it_keeps_them_and_predicts(venv, tmp_path):
    listed = json.loads(run([venv / "python", "-m", "pip", "list", "--format", "json"], cwd=tmp_path).stdout)
    versions = {p["name"].lower(): p["version"] for p in listed}
    assert {n: versions.get(n) for n in OLDER} == OLDER
    assert versions["basam"] == basam.__version__
    shown = dict(
        line.split(": ", 1)
        for line in run([venv / "python", "-m", "pip", "show", "basam"], cwd=tmp_path).stdout.splitlines()
        if ": " in line
    )
    site = Path(shown["Location"])
    assert site.is_relative_to(venv.parent) and "Editable project location" not in shown, shown  # installed, not linked
    assert run([venv / "basam", "--version"], cwd=tmp_path).stdout.strip() == f"basam {basam.__version__}"

    photo = site / "basam" / "assets" / "sample.jpg"
    run(
        [venv / "basam", "predict", photo, "--point", f"{POINT[0]},{POINT[1]}", "--out", tmp_path / "out"], cwd=tmp_path
    )
    mask = np.asarray(Image.open(tmp_path / "out" / "sample_mask.png")) > 127
    # the same prompt through this checkout: the installed wheel must give the same mask
    predictor = basam.Predictor(basam.load_model("default"))
    predictor.set_image(Image.open(ASSETS / "sample.jpg").convert("RGB"))
    masks, scores, _ = predictor.predict(
        point_coords=np.array([POINT]), point_labels=np.array([1]), multimask_output=False
    )
    expected = masks[int(np.argmax(scores))]
    assert expected.any() and mask.shape == expected.shape
    iou = (mask & expected).sum() / (mask | expected).sum()
    assert iou >= 0.999, iou
