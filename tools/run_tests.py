#!/usr/bin/env python3
"""The test command (README, CI): python3 tools/run_tests.py [pytest args]

1. a virtual environment in .venv with requirements-dev.txt (rebuilt only when it changed);
2. the GIMP 3 + Krita 5.2 root for the editor tests (cached in ~/.cache/simpson-editors;
   if it cannot be built, those tests are skipped with the reason);
3. ruff check (ruff.toml) on the whole tree: a finding fails the run before any test;
4. pytest. No test collected counts as a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import install  # noqa: E402


def main() -> int:
    py = install.ensure_env(REPO / ".venv", REPO / "requirements-dev.txt")
    if os.environ.get("SIMPSON_SKIP_EDITORS") != "1":
        t = time.monotonic()
        print("==> Building (or checking) the GIMP 3 + Krita root for the editor tests", flush=True)
        r = subprocess.run(["bash", str(REPO / "tools/editors/build-root.sh")])
        if r.returncode != 0:
            print("    editors root unavailable: the GIMP/Krita tests will be skipped", flush=True)
        print(f"    ({time.monotonic() - t:.0f} s)", flush=True)
    lint = [str(py), "-m", "ruff", "check", "--no-cache", "."]
    print("==> " + " ".join(lint), flush=True)
    if subprocess.run(lint, cwd=REPO).returncode != 0:
        print("run_tests: ruff check found problems (above): failing", file=sys.stderr)
        return 1
    cmd = [str(py), "-m", "pytest", *sys.argv[1:]]
    print("==> " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=REPO).returncode
    if code == 5:
        print("run_tests: pytest collected no tests: failing", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
