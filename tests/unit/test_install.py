"""install.py's plug-in installation and uninstallation, into temporary folders."""
import json
import subprocess
import sys

from tests.conftest import REPO


def run_install(*args, home):
    return subprocess.run([sys.executable, str(REPO / "install.py"), "--home", str(home), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_plugins_install_and_uninstall(tmp_path):
    gimp = tmp_path / "GIMP" / "3.0" / "plug-ins"
    krita = tmp_path / "krita"
    kritarc = tmp_path / "kritarc"
    kritarc.write_text("State=AAA\n\n[General]\nfoo=bar\n\n[python]\nenable_other=true\n")  # keys before a group, as Krita writes
    home = tmp_path / "home"
    for _ in range(2):   # re-running is safe
        r = run_install("--plugins-only", "--gimp-dir", gimp, "--krita-dir", krita, "--kritarc", kritarc, home=home)
        assert r.returncode == 0, r.stdout + r.stderr
    main = gimp / "simpson-erase" / "simpson-erase.py"
    assert main.exists() and main.stat().st_mode & 0o111
    assert (gimp / "simpson-erase" / "simpson_client" / "client.py").exists()
    assert (krita / "pykrita" / "simpson_erase" / "__init__.py").exists()
    assert (krita / "pykrita" / "simpson_erase" / "simpson_client" / "zmtp.py").exists()
    assert (krita / "pykrita" / "simpson_erase.desktop").exists()
    assert (krita / "actions" / "simpson_erase.action").exists()
    rc = kritarc.read_text()
    assert rc.count("enable_simpson_erase") == 1 and rc.startswith("State=AAA")
    assert "enable_simpson_erase=true" in rc and "enable_other=true" in rc and "foo=bar" in rc
    record = json.loads((home / "installed.json").read_text())
    assert str(gimp / "simpson-erase") in record["installed"]
    # what users get carries no test code: no dialog driver, no file run from an environment variable
    installed = [f for d in (gimp / "simpson-erase", krita / "pykrita") for f in d.rglob("*.py")]
    assert installed and not (gimp / "simpson-erase" / "simpson_erase_test_hook.py").exists()
    for f in installed:
        text = f.read_text(encoding="utf-8")
        assert "Autopilot" not in text and "SIMPSON_KRITA_DRIVER" not in text and "exec_module" not in text, f

    r = run_install("--uninstall", home=home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (gimp / "simpson-erase").exists() and not (krita / "pykrita" / "simpson_erase").exists()
    assert not (krita / "pykrita" / "simpson_erase.desktop").exists()
    rc = kritarc.read_text()
    assert "simpson_erase" not in rc and "enable_other=true" in rc
    assert not home.exists()


def test_no_editor_found_is_explained(tmp_path, monkeypatch):
    env_home = tmp_path / "user"
    env_home.mkdir()
    r = subprocess.run([sys.executable, str(REPO / "install.py"), "--home", str(tmp_path / "h"), "--plugins-only"],
                       capture_output=True, text=True, timeout=60,
                       env={"HOME": str(env_home), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "GIMP 3 not found" in r.stdout and "Krita not found" in r.stdout
