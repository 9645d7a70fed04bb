"""Command line: the daemon (`serve`) and one-process commands for scripts and batch work.

    python -m backend serve [--endpoint tcp://127.0.0.1:5557] [--curve-dir DIR]
    python -m backend select IMAGE --click X,Y [--click X,Y ...] [--neg X,Y ...] -o MASK.png
    python -m backend similar IMAGE --click X,Y -o MASK.png [--instances DIR] [--min-score S]
    python -m backend erase IMAGE --mask MASK.png -o OUT.png [--engine NAME] [--dilation PX]
    python -m backend doctor
    python -m backend keygen DIR [--force]

Masks are 8-bit single-channel PNGs, 255 = selected; images are read as displayed (EXIF orientation
applied). Exit codes: 0 ok, 1 the operation failed,
2 bad arguments or unreadable input.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from simpson_client import protocol, settings as client_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y (e.g. 120,45)") from None
    return x, y


def _device(text: str) -> str:
    from . import device
    if not device.valid(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(device.CHOICES)} (or cuda:N)")
    return text.strip().lower()


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def _dilation(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= protocol.MAX_DILATION:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels from 0 to {protocol.MAX_DILATION}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend", description="SimpSON Erase backend.")
    sub = p.add_subparsers(dest="command", required=True)
    # where the models run; every command that runs one takes it (backend/device.py)
    dev = argparse.ArgumentParser(add_help=False)
    dev.add_argument("--device", type=_device, default=None, metavar="auto|cpu|cuda|mps",
                     help="where the models run (default: config.json's \"device\", else auto: CUDA, then "
                          "Apple MPS, then the CPU)")

    s = sub.add_parser("serve", help="run the daemon", parents=[dev])
    s.add_argument("--endpoint", default=None, help="tcp://HOST:PORT (default: the configured one, "
                   f"else tcp://127.0.0.1:{client_settings.DEFAULT_PORT}); non-loopback needs --curve-dir")
    s.add_argument("--curve-dir", type=Path, default=None, help="CURVE keys: server.key_secret + clients/*.key")
    s.add_argument("--workers", type=int, default=protocol.WORKERS)
    s.add_argument("--idle-exit", type=float, default=0.0, metavar="SECONDS",
                   help="exit after this long without requests (0 = never; the plug-ins' autostart uses 1800)")

    for name, text in (("select", "select the object at the clicks"), ("similar", "select every similar object")):
        c = sub.add_parser(name, help=text, parents=[dev])
        c.add_argument("image", type=Path)
        c.add_argument("--click", type=_point, action="append", default=[], metavar="X,Y", required=True)
        c.add_argument("-o", "--output", type=Path, required=True, metavar="MASK.png")
        c.add_argument("--engine", default=None)
        if name == "select":
            c.add_argument("--neg", type=_point, action="append", default=[], metavar="X,Y")
            c.add_argument("--previous", type=Path, default=None, metavar="MASK.png")
        else:
            c.add_argument("--instances", type=Path, default=None, metavar="DIR",
                           help="also write each instance's mask (full size) and instances.json here")
            c.add_argument("--min-score", type=_unit, default=None, metavar="0..1",
                           help="score an object needs (default: the engine's own threshold; lower finds more)")

    e = sub.add_parser("erase", help="fill the masked area", parents=[dev])
    e.add_argument("image", type=Path)
    e.add_argument("--mask", type=Path, required=True)
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--engine", default=None)
    e.add_argument("--dilation", type=_dilation, default=None, metavar=f"0..{protocol.MAX_DILATION}",
                   help="grow the mask by exactly this many pixels (default: automatic per object, with its cast shadow)")

    sub.add_parser("doctor", help="check the installation", parents=[dev])
    k = sub.add_parser("keygen", help="make CURVE keys for remote use")
    k.add_argument("dir", type=Path)
    k.add_argument("--force", action="store_true", help="replace keys already in DIR (clients holding the old keys lose access)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None):
        from . import device
        device.set_preference(args.device)
    if args.command == "serve":
        return serve(args)
    if args.command == "keygen":
        return keygen(args.dir, args.force)
    if args.command == "doctor":
        return doctor()
    return run_one(args)


def serve(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .server import Server, StartupError

    cfg = client_settings.load()
    endpoint = args.endpoint or cfg.endpoint
    log_path = setup_logging(cfg.log_path)
    reuse_freed_memory()
    pipeline = Pipeline()
    pipeline.info()   # imports torch and checks the engines now, so the first request is quick
    try:
        server = Server(endpoint, pipeline, curve_dir=args.curve_dir, workers=args.workers, log_path=str(log_path),
                        idle_exit=args.idle_exit, on_idle=give_back_freed_memory)
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        logging.getLogger("simpson").error("start-up failed: %s", e)
        return EXIT_FAILED
    # only once the daemon will run: a warm-up still inside torch when a refused start-up
    # exits the interpreter aborts the process (exit -6 instead of 1 on a loaded machine)
    warm_up = threading.Thread(target=pipeline.warm_up, name="simpson-warm-up", daemon=True)
    warm_up.start()
    ready = f"SimpSON backend ready on {endpoint} (pid {os.getpid()}, log {log_path})"

    def on_ready() -> None:
        logging.getLogger("simpson").info(ready)
        print(ready, flush=True)

    # SIGINT (Ctrl-C, install.py's restart) and SIGTERM (`kill PID`, a service manager) stop the
    # daemon cleanly, also when it was started with SIGINT ignored, as a shell's background job
    # or a child of such a process is; SIGTERM's default would leave the pid file behind
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: server.stop())
    pid_file = Path(cfg.home) / "daemon.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        server.serve_forever(on_ready)
    finally:
        server.close()
        # a daemon thread killed inside torch at interpreter exit aborts the process (exit -6
        # on SIGTERM right after start-up): let the warm-up finish first
        warm_up.join(timeout=60)
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    return EXIT_OK


def reuse_freed_memory() -> None:
    """glibc only: take buffers up to 64 MB (a 12-MP layer of 48 MB, its RGB copy, masks) from the
    heap and keep up to 128 MB of them when freed, so the next image reuses that memory instead of
    mapping fresh pages: on the machines measured here first-touch page faults cost ~25 ms per
    48 MB (bench/protocol.py). Larger buffers (a network's activations on a big photo: 80-250 MB
    each during select similar) are mapped and given back when freed: kept in the heap they left
    it fragmented and the daemon's resident memory 130-230 MB higher (bench/memory.py)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 128 << 20)
        libc.mallopt(M_ARENA_MAX, 2)   # workers, hash checks and torch's threads share two heaps, not 16
    except (OSError, AttributeError):   # not glibc (macOS, Windows, musl)
        pass


def give_back_freed_memory() -> None:
    """glibc only: return the free pages of every heap to the system, once requests have stopped
    for a second (Server.on_idle): what a burst of requests freed does not stay resident."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8   # glibc's <malloc.h>


def setup_logging(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def run_one(args: argparse.Namespace) -> int:
    """select / similar / erase in this process, without a daemon. Every argument and input file
    is checked before the work starts (exit 2, one sentence); nothing is written unless the
    command succeeds."""
    from . import images
    from .engines import EngineUnavailable
    from .pipeline import Pipeline

    def usage(text: str) -> int:
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USAGE

    problem = _argument_problem(args)
    if problem:
        return usage(problem)
    try:
        pixels = images.load_image(args.image)
        h, w = pixels.shape[:2]
        points: list = []
        if args.command in ("select", "similar"):
            pts = [(x, y, True) for x, y in args.click] + [(x, y, False) for x, y in getattr(args, "neg", [])]
            points = protocol.points([[x, y, p] for x, y, p in pts], w, h)
        previous = images.load_mask(args.previous, w, h) if getattr(args, "previous", None) else None
        mask = images.load_mask(args.mask, w, h) if args.command == "erase" else None
        if args.command == "erase" and pixels.dtype != "uint8" and args.output.suffix.lower() != ".png":
            return usage(f"{args.image} has 16-bit colour; give an output name ending in .png to keep it.")
    except protocol.ProtocolError as e:
        return usage(e.message)
    except ValueError as e:
        return usage(str(e))
    pipeline = Pipeline()
    entry = pipeline.entry(pixels)
    start = time.perf_counter()
    written: list[Path] = []
    try:
        if args.command == "select":
            result, name = pipeline.select(entry, points, previous, args.engine)
            images.save_mask(args.output, result)
            written.append(args.output)
            print(f"{args.output}: {int((result > 0).sum())} pixels selected by {name} in {time.perf_counter() - start:.2f} s")
        elif args.command == "similar":
            union, found, name = pipeline.similar(entry, points, None, args.engine, min_score=args.min_score)
            if args.instances:
                written += write_instances(args.instances, found, w, h)
            images.save_mask(args.output, union)
            written.append(args.output)
            print(f"{args.output}: {len(found)} objects ({len(found) - 1} similar to the clicked one) "
                  f"found by {name} in {time.perf_counter() - start:.2f} s")
        else:
            box, patch, name = pipeline.erase(entry, mask, args.engine, args.dilation)
            out = pixels.copy()
            x, y, bw, bh = box
            out[y:y + bh, x:x + bw] = patch
            images.save_image(args.output, out)
            written.append(args.output)
            print(f"{args.output}: erased {bw}x{bh} px at ({x}, {y}) with {name} in {time.perf_counter() - start:.2f} s")
    except protocol.ProtocolError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return EXIT_USAGE if e.code == "bad_request" else EXIT_FAILED
    except (EngineUnavailable, ValueError, OSError) as e:
        for path in written:   # a failed command leaves nothing behind
            path.unlink(missing_ok=True)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _argument_problem(args: argparse.Namespace) -> str:
    """The sentence for an argument that cannot work (checked before any work), else ""."""
    if args.engine is not None:
        problem = _engine_problem(args.command, args.engine)
        if problem:
            return problem
    problem = _output_problem(args.output, "-o")
    if problem:
        return problem
    folder = getattr(args, "instances", None)
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            return f"--instances {folder} is a file; give a folder (it gets one mask per object and instances.json)."
        if not _writable(folder):
            return f"--instances {folder} cannot be created or written."
    return ""


def _engine_problem(op: str, name: str) -> str:
    from . import engines
    if name not in engines.REGISTRY:
        return f"There is no engine called {name!r}; known: {', '.join(sorted(engines.REGISTRY))}."
    try:
        engine = engines.get(name)
    except engines.EngineUnavailable:
        return ""   # it exists but cannot run here: the operation says why (exit 1)
    if op not in engine.ops:
        able = [n for n, d in engines.describe().items() if op in d["ops"]]
        return f"Engine {name!r} cannot {op}; engines that can: {', '.join(able)}."
    return ""


def _output_problem(path: Path, option: str) -> str:
    from PIL import Image as PILImage
    if path.is_dir():
        return f"{option} {path} is a folder; give a file name such as {path / 'out.png'}."
    PILImage.init()
    fmt = PILImage.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in PILImage.SAVE:
        return f"{option} {path}: cannot write {path.suffix or 'files without an extension'}; use .png."
    if not _writable(path.parent):
        return f"{option} {path}: the folder {path.parent} cannot be created or written."
    return ""


def _writable(folder: Path) -> bool:
    """Can folder be written, or be created inside its nearest existing ancestor?"""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def write_instances(folder: Path, found: list, width: int, height: int) -> list[Path]:
    """Each instance's full-size mask and instances.json in folder; -> the files written."""
    import numpy as np

    from . import images
    folder.mkdir(parents=True, exist_ok=True)
    listing, written = [], []
    for i, f in enumerate(found):
        full = np.zeros((height, width), np.uint8)
        x, y, w, h = f.box
        full[y:y + h, x:x + w][f.mask] = 255
        name = f"instance_{i:03d}.png"
        images.save_mask(folder / name, full)
        written.append(folder / name)
        listing.append({"file": name, "box": list(f.box), "score": round(float(f.score), 4), "seed": i == 0})
    (folder / "instances.json").write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
    return written + [folder / "instances.json"]


def doctor() -> int:
    """Print versions, engines and the daemon's state; exit 1 if something essential is missing."""
    from .pipeline import Pipeline
    cfg = client_settings.load()
    info = Pipeline().info()
    print(f"SimpSON Erase backend, protocol {info['protocol']}")
    for k, v in info["versions"].items():
        print(f"  {k:9s} {v}")
    print(f"  device    {info['device']} ({info['device_note']}; {info['threads']} threads)")
    print(f"  home      {cfg.home}")
    print(f"  endpoint  {cfg.endpoint}")
    print("engines:")
    for name, e in info["engines"].items():
        print(f"  {name:9s} {'/'.join(e['ops']):22s} {e['device']:5s} {e['status']}")
    print("defaults: " + ", ".join(f"{op}={name or 'NONE'}" for op, name in info["defaults"].items()))
    print(f"erase engine: {_erase_engine(info['defaults']['erase'])}")
    print(f"daemon:   {_daemon_state(cfg)}")
    ok = all(info["defaults"].values())
    print("doctor: OK" if ok else "doctor: PROBLEM: an operation has no working engine")
    return EXIT_OK if ok else EXIT_FAILED


def _erase_engine(name: str) -> str:
    """The default erase engine and why: LaMa when its weights are there, else what LaMa lacks."""
    from .engines import EngineUnavailable, get
    try:
        note = get("lama").weights_note()
    except EngineUnavailable as e:
        note = str(e).rstrip(".")
    return f"{name or 'NONE'} ({note})"


def _daemon_state(cfg: client_settings.Settings) -> str:
    from simpson_client import Client, SimpsonError
    import dataclasses
    try:
        info = Client(dataclasses.replace(cfg, autostart=False)).info(timeout=3)
    except SimpsonError as e:
        return f"not running ({e.user_message.rstrip('.')}); the plug-ins start it on demand"
    return f"running on {cfg.endpoint} (device {info['device']}, {info['cache']['images']} images cached)"


KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret", "clients/client.key")


def keygen(folder: Path, force: bool = False) -> int:
    """CURVE keys for a remote daemon: secret files owner-only (0600) in an owner-only folder
    (0700); keys already there are kept unless force."""
    import zmq.auth
    existing = [name for name in KEY_FILES if (folder / name).exists()]
    if existing and not force:
        print(f"error: {folder} already holds keys ({', '.join(existing)}); pass --force to replace them "
              "(clients holding the old keys then lose access).", file=sys.stderr)
        return EXIT_USAGE
    old_umask = os.umask(0o077)   # files and folders made from here on are the owner's only
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "clients").mkdir(exist_ok=True)
        if os.name == "posix":
            os.chmod(folder, 0o700)
        server_pub, server_secret = zmq.auth.create_certificates(str(folder), "server")
        client_pub, client_secret = zmq.auth.create_certificates(str(folder), "client")
    finally:
        os.umask(old_umask)
    os.replace(client_pub, folder / "clients" / "client.key")
    if os.name == "posix":
        for secret in (server_secret, client_secret):
            os.chmod(secret, 0o600)
    pub, sec = zmq.auth.load_certificate(client_secret)
    spub, _ = zmq.auth.load_certificate(server_pub)
    print(f"Keys in {folder}. Start the daemon with --curve-dir {folder}; put these in the client's config.json:")
    print(json.dumps({"curve_server_public": spub.decode(), "curve_client_public": pub.decode(),
                      "curve_client_secret": sec.decode()}, indent=2))
    return EXIT_OK
