"""Start the real Krita 5.2 (trixie root, Xvfb) with SimpSON Erase installed as install.py does.

Used by test_krita.py. A test-only pykrita plug-in (krita_test_plugin/, installed into the test
profile beside SimpSON Erase) runs DRIVER (a Python file SIMPSON_KRITA_DRIVER names), which waits
for a document with a view, drives the plug-in, writes OUTDIR/krita-status.txt ("OK" or a
traceback) and quits Krita.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "editors"
ROOT = Path(os.environ.get("EDITORS_ROOT", Path.home() / ".cache/simpson-editors/root"))
# HOME inside the root: one per pytest-xdist worker (Krita profiles must not be shared by parallel runs)
HOME_IN_ROOT = os.environ.get("KRITA_TEST_HOME", "/home/simpson-krita-e2e" + os.environ.get("PYTEST_XDIST_WORKER", ""))
DRIVER = Path(__file__).resolve().parent / "krita_driver.py"
TEST_PLUGIN_SRC = Path(__file__).resolve().parent / "krita_test_plugin"
TEST_PLUGIN = "simpson_erase_test_driver"   # pykrita plug-in that runs DRIVER (test profiles only)


def unavailable_reason() -> str | None:
    """Why the Krita end-to-end test cannot run here, or None."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the Krita editors root needs root (chroot/mount); not root here"
    if not (ROOT / ".simpson-editors-ok").exists():
        return f"no Krita 5.2 root at {ROOT}: run tools/editors/build-root.sh (root + Debian mirror, ~1-3 min)"
    if not (ROOT / "usr/bin/krita").exists():
        return f"the editors root at {ROOT} has no krita"
    return None


def install_plugin(simpson_home: Path) -> Path:
    """install.py --plugins-only into the test profile inside the root; QPainter canvas. -> pykrita dir."""
    resource_dir = ROOT / HOME_IN_ROOT.lstrip("/") / ".local/share/krita"
    kritarc = ROOT / HOME_IN_ROOT.lstrip("/") / ".config/kritarc"
    resource_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "install.py"), "--plugins-only", "--krita-dir", str(resource_dir),
           "--kritarc", str(kritarc), "--no-gimp", "--home", str(simpson_home)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"install.py failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    # Test profile only: the QPainter canvas (lighter, deterministic under Xvfb).
    kritarc_set(kritarc, "General", "canvasState", "OPENGL_FAILED")
    (kritarc.parent / "kritadisplayrc").write_text("[General]\nOpenGLRenderer=none\n")
    # Test profile only: the plug-in that runs the driver (the shipped plug-in has no test hook).
    pykrita = resource_dir / "pykrita"
    shutil.rmtree(pykrita / TEST_PLUGIN, ignore_errors=True)
    shutil.copytree(TEST_PLUGIN_SRC / TEST_PLUGIN, pykrita / TEST_PLUGIN)
    shutil.copy2(TEST_PLUGIN_SRC / f"{TEST_PLUGIN}.desktop", pykrita / f"{TEST_PLUGIN}.desktop")
    kritarc_set(kritarc, "python", f"enable_{TEST_PLUGIN}", "true")
    return pykrita


def kritarc_set(path: Path, group: str, key: str, value: str) -> None:
    """Set one key in a KConfig file line by line (Krita writes keys before the first [group]: no configparser)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    out, here, done = [], False, False
    for line in lines:
        if line.startswith("["):
            if here and not done:
                end = len(out)
                while end > 0 and not out[end - 1].strip():   # before the blank lines that end the group
                    end -= 1
                out.insert(end, f"{key}={value}")
                done = True
            here = line.strip() == f"[{group}]"
        elif here and line.split("=", 1)[0] == key:
            continue
        out.append(line)
    if not done:
        out += ([] if here else [f"[{group}]"]) + [f"{key}={value}"]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def autostart_binds() -> list[str] | None:
    """Host folders that make this interpreter (the backend's) run inside the root, or None if it is the
    system's own Python (the root has another one), so on-demand start cannot be tried there."""
    prefixes = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)}
    if any(p in ("/", "/usr", "/usr/local") for p in prefixes):
        return None
    return sorted(prefixes)


def write_autostart_config(port: int) -> None:
    """config.json of the plug-in's SIMPSON_HOME in the root, as install.py writes it: this interpreter and
    this checkout's backend, on a port where nothing runs yet (the plug-in must start the daemon)."""
    home = ROOT / HOME_IN_ROOT.lstrip("/") / "simpson-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "config.json").write_text(json.dumps({
        "endpoint": f"tcp://127.0.0.1:{port}", "python": sys.executable, "app_dir": str(REPO),
        "autostart": True, "start_timeout": 90.0}, indent=2) + "\n")


def run_krita(image: Path, out: Path, endpoint: str = "", driver: Path = DRIVER, timeout: float = 240,
              extra_env: dict[str, str] | None = None, binds: list[str] = ()) -> subprocess.CompletedProcess:
    """Krita on IMAGE under xvfb-run inside the root; the plug-in runs DRIVER and writes to OUT."""
    image, out = image.resolve(), out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ktmp = Path(tempfile.mkdtemp(prefix="simpson-krita.", dir="/tmp"))   # Krita is single-instance per TMPDIR
    env = dict(os.environ, EDITORS_HOME=HOME_IN_ROOT, SIMPSON_ENDPOINT=endpoint, IN_ROOT_ENV="SIMPSON_ENDPOINT",
               EDITORS_BINDS=" ".join([str(image.parent), str(out), str(driver.parent), *binds]))
    inner = ["env", f"TMPDIR={ktmp}", f"SIMPSON_KRITA_OUT={out}", f"SIMPSON_KRITA_DRIVER={driver}",
             "QT_QPA_PLATFORM=xcb", f"SIMPSON_HOME={HOME_IN_ROOT}/simpson-home"]
    inner += [f"{k}={v}" for k, v in (extra_env or {}).items()]
    cmd = ["timeout", "-k", "10", str(int(timeout)), str(TOOLS / "in-root.sh"), *inner,
           "xvfb-run", "-a", "-s", "-screen 0 1920x1440x24", "krita", "--nosplash", str(image)]
    try:
        for attempt in range(2):
            res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + 30)
            # Seen once on a loaded machine, right after the GIMP tests: xvfb-run reported Xvfb ready,
            # then Krita could not connect to it and aborted before the plug-in ran. The X server
            # failed, not the plug-in: start again once.
            if attempt or "could not connect to display" not in res.stderr + res.stdout:
                return res
        return res
    finally:
        shutil.rmtree(ktmp, ignore_errors=True)

