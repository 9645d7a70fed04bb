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
    assert r.returncode == 2 and "no engine" in r.stderr and not (tmp_path / "o.png").exists()   # README: 2


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


def _png_header_only(path, w, h):
    """A PNG whose header says w×h (the pixels are never reached: the size check comes first)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_every_bad_input_is_one_sentence_and_exit_2(tmp_path):
    """Issue 26.6: damaged and oversized files, bad options: exit 2, one line on stderr (no traceback,
    no PIL warning), no output written."""
    Image.fromarray(scene(seed=8)[..., :3]).save(tmp_path / "in.png")
    data = (tmp_path / "in.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    Image.fromarray(scene(seed=8)[..., :3]).save(tmp_path / "in.jpg")
    jpg = (tmp_path / "in.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[:len(jpg) // 2])
    _png_header_only(tmp_path / "huge.png", 20000, 20000)     # PIL's decompression-bomb error
    _png_header_only(tmp_path / "big.png", 10000, 10000)      # PIL's decompression-bomb warning
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "o.png"
    cases = [
        (("select", tmp_path / "cut.png", "--click", "5,5", "-o", out), "damaged or incomplete"),
        (("select", tmp_path / "cut.jpg", "--click", "5,5", "-o", out), "damaged or incomplete"),
        (("select", tmp_path / "huge.png", "--click", "5,5", "-o", out), "40-megapixel"),
        (("select", tmp_path / "big.png", "--click", "5,5", "-o", out), "40-megapixel"),
        (("erase", tmp_path / "in.png", "--mask", tmp_path / "cut.png", "-o", out), "damaged or incomplete"),
        (("erase", tmp_path / "in.png", "--mask", tmp_path / "huge.png", "-o", out), "40-megapixel"),
        (("erase", tmp_path / "in.png", "--mask", tmp_path / "in.png", "-o", out, "--dilation", "-3"), "0 to 256"),
        (("erase", tmp_path / "in.png", "--mask", tmp_path / "in.png", "-o", out, "--engine", "nope"), "no engine"),
        (("erase", tmp_path / "in.png", "--mask", tmp_path / "in.png", "-o", out, "--engine", "dsn"), "cannot erase"),
        (("similar", tmp_path / "in.png", "--click", "64,60", "-o", out, "--instances", tmp_path / "file"),
         "is a file"),
        (("select", tmp_path / "in.png", "--click", "64,60", "-o", tmp_path / "o.xyz"), "cannot write"),
        (("select", tmp_path / "in.png", "--click", "64,60", "-o", tmp_path), "is a folder"),
    ]
    for args, words in cases:
        r = run(*args)
        lines = [line for line in r.stderr.splitlines() if not line.startswith(("usage:", " "))]
        assert r.returncode == 2 and words in r.stderr and len(lines) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr and "Warning" not in r.stderr
        assert not out.exists() and not (tmp_path / "o.xyz").exists()


def test_photos_are_read_as_displayed_exif_orientation(tmp_path):
    """Issue 26.9: a camera JPEG stored sideways with EXIF orientation 6 is read turned, as
    viewers show it; clicks and masks are in that orientation."""
    stored = scene(seed=8)[..., :3]                              # 320×240 as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                             # displayed: turned 90° clockwise
    Image.fromarray(stored).save(tmp_path / "cam.jpg", exif=exif, quality=95)
    cx, cy = disc_centres(320, 240)[2]
    dx, dy = 239 - cy, cx                                        # the disc as displayed (240 wide, 320 high)
    r = run("select", tmp_path / "cam.jpg", "--click", f"{dx},{dy}", "-o", tmp_path / "sel.png", "--engine", "classic")
    assert r.returncode == 0, r.stderr
    sel = np.asarray(Image.open(tmp_path / "sel.png"))
    assert sel.shape == (320, 240) and sel[dy, dx] == 255
    r = run("erase", tmp_path / "cam.jpg", "--mask", tmp_path / "sel.png", "-o", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (320, 240, 4)
