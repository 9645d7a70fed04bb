"""The one-process CLI as a shell user runs it: files in, files out, exit codes."""
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO, disc_centres, scene


def run(*args):
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_select_similar_erase(tmp_path):
    Image.fromarray(scene(seed=8)[..., :3]).save(tmp_path / "in.png")
    x, y = disc_centres(320, 240)[2]
    r = run("select", tmp_path / "in.png", "--click", f"{x},{y}", "-o", tmp_path / "sel.png")
    assert r.returncode == 0, r.stderr
    sel = np.asarray(Image.open(tmp_path / "sel.png"))
    assert sel.ndim == 2 and sel.dtype == np.uint8 and sel[y, x] == 255
    r = run("similar", tmp_path / "in.png", "--click", f"{x},{y}", "-o", tmp_path / "sim.png",
            "--instances", tmp_path / "inst")
    assert r.returncode == 0, r.stderr
    r = run("similar", tmp_path / "in.png", "--click", f"{x},{y}", "-o", tmp_path / "one.png", "--min-score", "1")
    assert r.returncode == 0, r.stderr
    assert "(0 similar to the clicked one)" in r.stdout     # nothing scores above 1: the clicked object alone
    assert (tmp_path / "inst" / "instances.json").exists() and (tmp_path / "inst" / "instance_000.png").exists()
    r = run("erase", tmp_path / "in.png", "--mask", tmp_path / "sim.png", "-o", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (240, 320, 4) and out[y, x, 0] < 150


def test_errors_exit_2_with_a_sentence(tmp_path):
    Image.fromarray(scene(seed=8)[..., :3]).save(tmp_path / "in.png")
    r = run("select", tmp_path / "in.png", "--click", "999,1", "-o", tmp_path / "m.png")
    assert r.returncode == 2 and "outside" in r.stderr and not (tmp_path / "m.png").exists()
    r = run("select", tmp_path / "missing.png", "--click", "1,1", "-o", tmp_path / "m.png")
    assert r.returncode == 2 and "Cannot read image" in r.stderr
    r = run("select", tmp_path / "in.png", "--click", "abc", "-o", tmp_path / "m.png")
    assert r.returncode == 2 and "X,Y" in r.stderr
    r = run("similar", tmp_path / "in.png", "--click", "5,5", "-o", tmp_path / "m.png", "--min-score", "1.5")
    assert r.returncode == 2 and "0 to 1" in r.stderr and not (tmp_path / "m.png").exists()
    Image.fromarray(np.zeros((240, 320), np.uint8)).save(tmp_path / "empty.png")
    r = run("erase", tmp_path / "in.png", "--mask", tmp_path / "empty.png", "-o", tmp_path / "o.png")
    assert r.returncode == 2 and "empty" in r.stderr and not (tmp_path / "o.png").exists()
    r = run("erase", tmp_path / "in.png", "--mask", tmp_path / "in.png", "-o", tmp_path / "o.png", "--engine", "zz")
    assert r.returncode == 1 and "no engine" in r.stderr
