#!/usr/bin/env python3
"""Set up SimpSON Erase: backend environment, plug-ins for GIMP 3 and Krita 5.2, a first run.

    python3 install.py                 # everything, then a demo on samples/beach.jpg
    python3 install.py --no-plugins    # backend only
    python3 install.py --no-lama       # without the LaMa weights (~200 MB; erase uses the built-in engine)
    python3 install.py --plugins-only --gimp-dir DIR --krita-dir DIR [--kritarc FILE]
    python3 install.py --uninstall

Stdlib only; Python >= 3.10 on Linux, macOS or Windows. Re-running is safe and quick: the
environment is rebuilt only when requirements.txt changed. SIMPSON_HOME picks the folder.
LaMa's weights are downloaded by default (resumable, md5-checked; LAMA_MODEL_URL and
LAMA_MODEL_MD5 override the address and checksum, as in IOPaint); offline, the install still
succeeds and erase uses the built-in engine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from backend import weights  # noqa: E402 - stdlib only at import (torch only when a model is built)
from simpson_client import settings as client_settings  # noqa: E402

SAMPLE = REPO / "samples" / "beach.jpg"
SAMPLE_CLICK = (1104, 726)          # a drink can on the pebbles (see samples/README.md)
GIMP_FOLDER = "simpson-erase"
KRITA_PACKAGE = "simpson_erase"


# ---------------------------------------------------------------- output
def step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.monotonic()


def done(start: float, text: str = "done") -> None:
    print(f"    {text} ({time.monotonic() - start:.1f} s)", flush=True)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a command, showing a progress line every few seconds; raise SystemExit on failure."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, **kw)
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - start > 3 and int(time.monotonic() - start) % 5 == 0:
                print(f"    … {what} ({time.monotonic() - start:.0f} s)", flush=True)
                time.sleep(0.5)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        print(text[-3000:])
        raise SystemExit(f"install.py: {what} failed (exit {proc.returncode}).")
    return subprocess.CompletedProcess(cmd, proc.returncode, text, "")


# ---------------------------------------------------------------- environment
def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


NOTES: list[str] = []   # sentences repeated at the end of the install (a GPU that cannot be used)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# run by the new environment's Python after the CUDA build is installed: can it use the GPU?
CUDA_CHECK = """
import json, warnings
out = {"ok": False, "cuda": None, "why": ""}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    out["cuda"] = torch.version.cuda
    try:
        out["ok"] = torch.cuda.is_available() and (torch.ones(2, device="cuda") * 2).sum().item() == 4
    except Exception as e:
        out["why"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
if not out["ok"] and not out["why"]:
    out["why"] = next((str(w.message).strip().splitlines()[0] for w in caught
                       if "cuda" in str(w.message).lower() or "driver" in str(w.message).lower()),
                      "torch.cuda.is_available() is False")
print(json.dumps(out))
"""


def nvidia_gpu() -> tuple[str, str] | None:
    """(name, driver version) of the first NVIDIA GPU that nvidia-smi sees; None when there is no
    nvidia-smi or it sees no GPU (no driver loaded, a container without the GPU)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    line = next((s for s in r.stdout.splitlines() if s.strip()), "") if r.returncode == 0 else ""
    if "," not in line:
        return None
    name, driver = (s.strip() for s in line.split(",", 1))
    return name, driver


def has_nvidia_gpu() -> bool:
    return nvidia_gpu() is not None


def choose_build(gpu_asked: bool) -> str:
    """"cpu", or the driver version of the NVIDIA GPU the CUDA build is installed for: with --gpu,
    or without it when nvidia-smi sees a GPU. --gpu without a GPU says so and gives the CPU build."""
    gpu = nvidia_gpu()
    if gpu is None:
        if gpu_asked:
            note = ("--gpu: no NVIDIA GPU was found (nvidia-smi is missing or sees none), so the CPU build of "
                    "PyTorch is installed; SimpSON Erase runs on the CPU.")
            print(f"    {note}")
            NOTES.append(note)
        return "cpu"
    name, driver = gpu
    print(f"    NVIDIA GPU: {name}, driver {driver}: the CUDA build of PyTorch will be installed")
    return driver


def ensure_env(env_dir: Path, requirements: Path, gpu: bool | str = False) -> Path:
    """A virtual environment with requirements installed; skipped when nothing changed.
    gpu: False/"cpu" = the CPU build of PyTorch; True or an NVIDIA driver version = the CUDA build
    (the CPU build after all, with a sentence, when that build cannot use the GPU). The stamp
    holds the driver version: a new driver tries the CUDA build again, the same one does not."""
    stamp = env_dir / "simpson-requirements.sha256"
    driver = "" if gpu is True else ("cpu" if not gpu else str(gpu))
    gpu = driver != "cpu"
    wanted = hashlib.sha256(_requirements_text(requirements).encode() + (b"gpu" + driver.encode() if gpu else b"cpu")
                            ).hexdigest()
    py = venv_python(env_dir)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        print(f"    environment {env_dir} is up to date")
        return py
    t = step(f"Creating the backend environment in {env_dir}")
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(env_dir)
    done(t)
    install_torch(py, requirements, gpu)
    if gpu:
        ensure_cuda_works(py, requirements, driver)
    t = step("Installing the other dependencies (numpy, OpenCV, Pillow, pyzmq…)")
    run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements)],
        "pip install", cwd=requirements.parent)
    done(t)
    stamp.write_text(wanted + "\n")
    return py


def _requirements_text(path: Path) -> str:
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("-r "):
            text += _requirements_text(path.parent / line[3:].strip())
    return text


def _torch_pin() -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.startswith("torch"):
            return line.split("#")[0].strip()
    return "torch"


def install_torch(py: Path, requirements: Path, gpu: bool) -> None:
    """PyTorch: the CPU build unless a GPU build is wanted; never a CUDA build by accident."""
    pin = _torch_pin()
    t = step(f"Installing PyTorch ({pin}, {'GPU' if gpu else 'CPU'} build; a few hundred MB)")
    if gpu or sys.platform == "darwin":
        run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", pin], "PyTorch")
        done(t)
        return
    # What would the default index give? If it drags in NVIDIA's CUDA wheels, use the CPU index.
    report = Path(tempfile.mkdtemp()) / "report.json"
    run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--dry-run", "--ignore-installed",
         "--report", str(report), pin], "resolving PyTorch")
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text()).get("install", [])]
    if any(n.startswith("nvidia-") for n in names):
        print("    the default index offers a CUDA build; using PyTorch's CPU index instead")
        run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", pin,
             "--index-url", CPU_INDEX], "PyTorch (CPU build)")
    else:
        run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", pin], "PyTorch")
    done(t)


def cuda_check(py: Path) -> dict:
    """{"ok", "cuda" (the build's CUDA version), "why"} from the environment's own PyTorch."""
    try:
        r = subprocess.run([str(py), "-c", CUDA_CHECK], capture_output=True, text=True, timeout=300)
        lines = r.stdout.strip().splitlines()
        if r.returncode == 0 and lines:
            return json.loads(lines[-1])
        tail = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        tail = str(e)
    return {"ok": False, "cuda": None, "why": f"PyTorch did not start ({tail})"}


def ensure_cuda_works(py: Path, requirements: Path, driver: str) -> None:
    """After the CUDA build: when it cannot use the GPU (a driver too old for the build's CUDA,
    say), one sentence, and the CPU build instead, so the install ends working."""
    check = cuda_check(py)
    if check.get("ok"):
        print(f"    PyTorch uses the GPU (CUDA {check.get('cuda')})")
        return
    note = (f"The CUDA build of PyTorch (CUDA {check.get('cuda') or '?'}) cannot use the GPU with NVIDIA driver "
            f"{driver or '?'} ({check.get('why', '').rstrip('.')}), so the CPU build is installed instead and "
            "SimpSON Erase runs on the CPU; update the NVIDIA driver and run install.py again to use the GPU.")
    print(f"    {note}")
    NOTES.append(note)
    listed = run([str(py), "-m", "pip", "list", "--disable-pip-version-check", "--format=json"], "listing packages")
    cuda_packages = [p["name"] for p in json.loads(listed.stdout or "[]")
                     if p["name"].lower().startswith(("nvidia-", "triton"))]
    run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torch", *cuda_packages], "removing the CUDA build")
    install_torch(py, requirements, gpu=False)


def stop_daemon(home: Path) -> None:
    """Stop a daemon started from an earlier install, so the new code is what runs next."""
    pid_file = home / "daemon.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 2 if os.name != "nt" else 15)  # SIGINT: a clean shutdown
    except (ValueError, OSError):
        pid_file.unlink(missing_ok=True)
        return
    for _ in range(50):
        if not pid_file.exists():
            print(f"    stopped the running daemon (pid {pid})")
            return
        time.sleep(0.1)
    print(f"    warning: the running daemon (pid {pid}) did not stop within 5 s; it runs the old code "
          "until it exits (after 30 idle minutes)")


def copy_app(home: Path) -> Path:
    """The backend code, its weights and the client, copied so the daemon outlives this clone."""
    t = step(f"Copying the backend to {home / 'app'}")
    app = home / "app"
    tmp = home / "app.new"
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("backend", "simpson_client"):
        shutil.copytree(REPO / name, tmp / name, ignore=ignore)
    shutil.rmtree(app, ignore_errors=True)
    tmp.rename(app)
    done(t)
    return app


# ---------------------------------------------------------------- LaMa weights (the default erase engine)
LAMA_FILE = weights.MODELS["lama"].file   # big-lama.pt: the one table of weights names it


class DownloadError(Exception):
    """The LaMa weights could not be fetched; str() is the reason, for one sentence."""


def lama_source() -> tuple[str, str, Optional[int]]:
    """(url, md5, size or None) of big-lama.pt, from backend/weights.py's table. As in IOPaint,
    LAMA_MODEL_URL and LAMA_MODEL_MD5 override the address and the checksum (a mirror, say);
    the size is checked only for the published md5."""
    spec = weights.MODELS["lama"]
    url = os.environ.get("LAMA_MODEL_URL") or spec.url
    md5 = (os.environ.get("LAMA_MODEL_MD5") or spec.md5).strip().lower()
    return url, md5, spec.size if md5 == spec.md5 else None


def install_lama(home: Path) -> Optional[Path]:
    """Download LaMa's weights; when that fails, say so in one line and go on (erase then uses
    the built-in engine)."""
    try:
        return download_lama(home)
    except DownloadError as e:
        print(f"    LaMa not installed: {e}. Erasing uses the built-in engine until then; run "
              f"`python3 install.py` again to retry (a partial download resumes), or put {LAMA_FILE} "
              f"into {home / 'weights'}.", flush=True)
        return None


def download_lama(home: Path) -> Path:
    """big-lama.pt (TorchScript, ~200 MB) into home/weights/: fetched into big-lama.pt.part
    (resumed with an HTTP Range request when a part is there), checked (md5, and the size),
    then renamed into place; a file already there is kept when its md5 is right, else removed.
    Raises DownloadError."""
    url, want, size = lama_source()
    dest = home / "weights" / LAMA_FILE
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        got = weights.md5_of(dest)
        if got == want and (size is None or dest.stat().st_size == size):
            print(f"    {dest} is already there (md5 ok)")
            return dest
        dest.unlink()
        print(f"    removed {dest}: it is damaged or another file (md5 {got}, expected {want}); "
              "downloading it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    t = step(f"Downloading the LaMa weights for erase (big-lama, ~200 MB) from {url}")
    _fetch(url, part, size)
    got = weights.md5_of(part)
    if got != want:
        part.unlink()
        raise DownloadError(f"the downloaded file was damaged (md5 {got}, expected {want}) and was removed")
    os.replace(part, dest)            # atomic: the daemon never sees half a file
    done(t, f"saved {dest} (md5 ok)")
    return dest


def _fetch(url: str, part: Path, size: Optional[int], timeout: float = 30) -> None:
    """Fetch url into part, appending to what part already holds when the server allows it."""
    import http.client  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size:
        return                                   # whole already: the md5 decides
    headers = {"User-Agent": "simpson-erase-install"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:               # nothing after what we have: the md5 decides
            return
        raise DownloadError(f"{url} answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {url} ({reason})") from None
    with resp:
        total: Optional[int] = None
        if have and resp.status == 206:
            rng = resp.headers.get("Content-Range", "")        # bytes START-END/TOTAL
            try:
                start = int(rng.split()[1].split("-")[0])
                total = int(rng.split("/")[1])
            except (IndexError, ValueError):
                start = -1
            if start != have:
                raise DownloadError(f"{url} resumed at the wrong place ({rng!r}); delete {part} and try again")
            print(f"    resuming at {have / 2**20:.1f} MB")
            mode = "ab"
        else:
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            raise DownloadError(f"{url} offers {total} bytes, not the {size} of the published file")
        expected = total if total is not None else size
        bar = _Progress(expected)
        try:
            with open(part, mode) as f:
                bar.show(have)
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    have += len(chunk)
                    bar.show(have)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as e:
            bar.end()
            raise DownloadError(f"the download stopped at {have / 2**20:.1f} MB ({type(e).__name__}: {e})") from None
        bar.end()
    if expected is not None and have != expected:
        raise DownloadError(f"the download stopped at {have / 2**20:.1f} of {expected / 2**20:.1f} MB")


class _Progress:
    """A bar redrawn in place on a terminal; a line every 10 % (or 16 MB) in a log."""

    def __init__(self, total: Optional[int]):
        self.total, self.tty = total, sys.stdout.isatty()
        self.start, self.first, self.last, self.open = time.monotonic(), None, None, False

    def show(self, got: int) -> None:
        if self.first is None:
            self.first = got
        if self.total:
            pct = min(100, 100 * got // self.total)
            key = pct if self.tty else pct // 10
        else:
            key = got >> (20 if self.tty else 24)
        if key == self.last:
            return
        self.last = key
        rate = (got - self.first) / max(time.monotonic() - self.start, 1e-3) / 2**20
        text = f"{got / 2**20:.1f} MB"
        if self.total:
            text = f"[{'#' * (pct // 5)}{'.' * (20 - pct // 5)}] {pct:3d} %  {text} of {self.total / 2**20:.1f} MB"
        text += f"  {rate:.1f} MB/s"
        if self.tty:
            print("\r    " + text, end="", flush=True)
            self.open = True
        else:
            print("    " + text, flush=True)

    def end(self) -> None:
        if self.open:
            print(flush=True)
            self.open = False


# ---------------------------------------------------------------- plug-ins
def gimp_plugin_dirs() -> list[Path]:
    """GIMP 3 user plug-in folders that exist (GIMP has been run once) on this machine."""
    home = Path.home()
    roots = []
    if sys.platform == "win32":
        roots.append(Path(os.environ.get("APPDATA", home / "AppData/Roaming")) / "GIMP/3.0")
    elif sys.platform == "darwin":
        roots.append(home / "Library/Application Support/GIMP/3.0")
    else:
        roots.append(Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "GIMP/3.0")
        roots.append(home / ".var/app/org.gimp.GIMP/config/GIMP/3.0")
        roots.append(home / "snap/gimp/current/.config/GIMP/3.0")
    return [r / "plug-ins" for r in roots if r.is_dir()]


def krita_dirs() -> list[tuple[Path, Path]]:
    """(resource folder holding pykrita, kritarc) for each Krita found on this machine."""
    home = Path.home()
    found = []
    if sys.platform == "win32":
        found.append((Path(os.environ.get("APPDATA", home / "AppData/Roaming")) / "krita",
                      Path(os.environ.get("LOCALAPPDATA", home / "AppData/Local")) / "kritarc"))
    elif sys.platform == "darwin":
        found.append((home / "Library/Application Support/krita", home / "Library/Preferences/kritarc"))
    else:
        data = Path(os.environ.get("XDG_DATA_HOME", home / ".local/share"))
        config = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
        found.append((data / "krita", config / "kritarc"))
        found.append((home / ".var/app/org.kde.krita/data/krita", home / ".var/app/org.kde.krita/config/kritarc"))
    return [(res, rc) for res, rc in found if res.is_dir() or rc.exists()]


def install_gimp(plugin_dir: Path) -> Path:
    target = plugin_dir / GIMP_FOLDER
    _replace_tree(REPO / "plugin_gimp" / GIMP_FOLDER, target)
    shutil.copytree(REPO / "simpson_client", target / "simpson_client", ignore=shutil.ignore_patterns("__pycache__"))
    main = target / f"{GIMP_FOLDER}.py"
    if main.exists():
        main.chmod(0o755)
    return target


def install_krita(resource_dir: Path, kritarc: Path) -> Path:
    pykrita = resource_dir / "pykrita"
    target = pykrita / KRITA_PACKAGE
    _replace_tree(REPO / "plugin_krita" / KRITA_PACKAGE, target)
    shutil.copytree(REPO / "simpson_client", target / "simpson_client", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "plugin_krita" / f"{KRITA_PACKAGE}.desktop", pykrita / f"{KRITA_PACKAGE}.desktop")
    # Default shortcuts: Krita reads .action files from <resource folder>/actions/ (not from pykrita/).
    (resource_dir / "actions").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "plugin_krita" / f"{KRITA_PACKAGE}.action", resource_dir / "actions" / f"{KRITA_PACKAGE}.action")
    _kritarc_enable(kritarc, True)
    return target


def _kritarc_enable(kritarc: Path, enable: bool) -> None:
    """Set (or remove) [python] enable_simpson_erase in kritarc, keeping every other line as it is.

    kritarc is a KConfig file, not an INI file configparser reads: Krita writes keys before the
    first [group] (configparser: MissingSectionHeaderError). So it is edited line by line."""
    key = f"enable_{KRITA_PACKAGE}"
    lines = kritarc.read_text(encoding="utf-8").splitlines() if kritarc.exists() else []
    out: list[str] = []
    in_python = done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_python and enable and not done:
                out.append(f"{key}=true")
                done = True
            in_python = stripped == "[python]"
        elif in_python and stripped.split("=", 1)[0].strip() == key:
            continue                        # the old value; the new one goes at the section's end
        out.append(line)
    if enable and not done:
        if not in_python:
            out += ([""] if out and out[-1].strip() else []) + ["[python]"]
        out.append(f"{key}=true")
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text("\n".join(out) + "\n", encoding="utf-8")


def _replace_tree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise SystemExit(f"install.py: {src} is missing from this checkout.")
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def install_plugins(args: argparse.Namespace, record: dict) -> None:
    gimp = [Path(d) for d in args.gimp_dir] if args.gimp_dir else ([] if args.no_gimp else gimp_plugin_dirs())
    if args.krita_dir:
        rc = [Path(args.kritarc)] if args.kritarc else [krita_dirs_default_rc()]
        krita = [(Path(d), rc[0]) for d in args.krita_dir]
    else:
        krita = [] if args.no_krita else krita_dirs()
    t = step("Installing the plug-ins")
    for d in gimp:
        target = install_gimp(d)
        record.setdefault("installed", []).append(str(target))
        print(f"    GIMP 3:  {target}")
    for res, rc in krita:
        target = install_krita(res, rc)
        record.setdefault("installed", []).append(str(target))
        record.setdefault("installed", []).append(str(res / "pykrita" / f"{KRITA_PACKAGE}.desktop"))
        record.setdefault("installed", []).append(str(res / "actions" / f"{KRITA_PACKAGE}.action"))
        record.setdefault("kritarc", []).append(str(rc))
        print(f"    Krita:   {target} (enabled in {rc})")
    if not gimp and not args.no_gimp:
        print("    GIMP 3 not found (run it once, or pass --gimp-dir .../GIMP/3.0/plug-ins)")
    if not krita and not args.no_krita:
        print("    Krita not found (run it once, or pass --krita-dir <folder holding pykrita>)")
    done(t)


def krita_dirs_default_rc() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData/Local")) / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library/Preferences/kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "kritarc"


# ---------------------------------------------------------------- checks and demo
def doctor(py: Path, settings: client_settings.Settings) -> None:
    t = step("Checking the backend (doctor)")
    out = run([str(py), "-m", "backend", "doctor"], "doctor", cwd=settings.app_dir,
              env=dict(os.environ, SIMPSON_HOME=settings.home))
    print("    " + out.stdout.strip().replace("\n", "\n    "))
    from simpson_client import Client
    info = Client(settings).info(timeout=30)   # starts the daemon on demand, as the plug-ins will
    print(f"    daemon answers on {settings.endpoint}: protocol {info['protocol']}, device {info['device']}")
    done(t)


def demo(py: Path, settings: client_settings.Settings) -> None:
    out = Path(settings.home) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    x, y = SAMPLE_CLICK
    env = dict(os.environ, SIMPSON_HOME=settings.home)
    t = step(f"Running SimpSON Erase on {SAMPLE.name}: select at ({x}, {y}), select similar, erase")
    for cmd in (["select", str(SAMPLE), "--click", f"{x},{y}", "-o", str(out / "selected.png")],
                ["similar", str(SAMPLE), "--click", f"{x},{y}", "-o", str(out / "similar.png"),
                 "--instances", str(out / "instances")],
                ["erase", str(SAMPLE), "--mask", str(out / "similar.png"), "-o", str(out / "erased.png")]):
        result = run([str(py), "-m", "backend", *cmd], cmd[0], cwd=settings.app_dir, env=env)
        print("    " + result.stdout.strip().splitlines()[-1])
    done(t)
    print(f"\nDone. Results of the demo are in {out}: selected.png, similar.png, erased.png")


# ---------------------------------------------------------------- uninstall
def uninstall(home: Path) -> None:
    record_path = home / "installed.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    t = step("Removing SimpSON Erase")
    for p in record.get("installed", []):
        path = Path(p)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        print(f"    removed {path}")
    for rc in record.get("kritarc", []):
        if Path(rc).exists():
            _kritarc_enable(Path(rc), False)
    if home.exists():
        shutil.rmtree(home, ignore_errors=True)
        print(f"    removed {home}")
    done(t)


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Install SimpSON Erase.")
    p.add_argument("--home", default=None, help="install folder (default: SIMPSON_HOME or the per-user data folder)")
    p.add_argument("--gimp-dir", action="append", default=[], help="a GIMP 3 plug-ins folder (repeatable)")
    p.add_argument("--krita-dir", action="append", default=[], help="a Krita resource folder holding pykrita (repeatable)")
    p.add_argument("--kritarc", default=None, help="the kritarc to enable the plug-in in (with --krita-dir)")
    p.add_argument("--no-plugins", action="store_true", help="do not install the plug-ins")
    p.add_argument("--no-gimp", action="store_true")
    p.add_argument("--no-krita", action="store_true")
    p.add_argument("--plugins-only", action="store_true", help="only (re)install the plug-ins")
    p.add_argument("--gpu", action="store_true", help="install the CUDA build of PyTorch (NVIDIA GPUs)")
    lama = p.add_mutually_exclusive_group()
    lama.add_argument("--no-lama", action="store_true",
                      help="do not download the LaMa weights (big-lama.pt, ~200 MB); erase then uses the built-in engine")
    lama.add_argument("--lama", action="store_true",
                      help="download the LaMa weights (the default; kept for older scripts)")
    p.add_argument("--no-demo", action="store_true", help="skip the first run on the sample photo")
    p.add_argument("--uninstall", action="store_true")
    args = p.parse_args(argv)
    if sys.version_info < (3, 10):
        raise SystemExit("install.py needs Python 3.10 or newer.")
    home = Path(args.home).expanduser() if args.home else client_settings.default_home()
    if args.uninstall:
        stop_daemon(home)
        uninstall(home)
        return 0
    record_path = home / "installed.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    home.mkdir(parents=True, exist_ok=True)
    if not args.plugins_only:
        py = ensure_env(home / "venv", REPO / "requirements.txt", gpu=choose_build(args.gpu))
        stop_daemon(home)
        app = copy_app(home)
        settings = client_settings.load(home)
        settings.python, settings.app_dir = str(py), str(app)
        print(f"    settings: {client_settings.save(settings)}")
        if not args.no_lama:
            install_lama(home)
    if not args.no_plugins:
        install_plugins(args, record)
    record["installed"] = sorted(set(record.get("installed", [])))
    record["kritarc"] = sorted(set(record.get("kritarc", [])))
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    if not args.plugins_only:
        doctor(py, settings)
        if not args.no_demo:
            demo(py, settings)
    for note in NOTES:   # said where it happened; again here, where the user reads last
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
