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


def test_keygen_secrets_are_the_owners_only_and_never_replaced_silently(tmp_path):
    """Issue 26.1: secret keys 0600 in a 0700 folder; a second keygen refuses without --force."""
    import os
    import stat
    keys = tmp_path / "keys"
    r = run("keygen", keys)
    assert r.returncode == 0, r.stderr
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)   # noqa: E731
    assert mode(keys) == 0o700
    assert mode(keys / "server.key_secret") == 0o600 and mode(keys / "client.key_secret") == 0o600
    assert (keys / "clients" / "client.key").exists() and not mode(keys / "clients") & 0o022
    before = (keys / "server.key_secret").read_bytes()
    r = run("keygen", keys)
    assert r.returncode == 2 and "--force" in r.stderr and r.stderr.count("\n") == 1
    assert (keys / "server.key_secret").read_bytes() == before
    r = run("keygen", keys, "--force")
    assert r.returncode == 0 and (keys / "server.key_secret").read_bytes() != before


def test_daemon_refuses_a_secret_key_others_can_read(tmp_path):
    """Issue 26.1: like ssh, the daemon does not serve with a group/world-readable secret key."""
    import os
    from backend.server import insecure_keys
    keys = tmp_path / "keys"
    assert run("keygen", keys).returncode == 0
    assert insecure_keys(keys / "server.key_secret", keys / "clients") == ""
    os.chmod(keys / "server.key_secret", 0o644)
    assert "chmod 600" in insecure_keys(keys / "server.key_secret", keys / "clients")
    os.chmod(keys / "server.key_secret", 0o600)
    os.chmod(keys / "clients", 0o777)
    assert "other users" in insecure_keys(keys / "server.key_secret", keys / "clients")


def test_config_with_a_client_secret_is_the_owners_only(tmp_path):
    import os
    import stat
    from simpson_client import settings
    cfg = settings.Settings(home=str(tmp_path), curve_client_secret="x" * 40)
    path = settings.save(cfg)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
