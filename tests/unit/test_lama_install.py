"""install.py --lama: download, md5 check, env overrides (a local file:// URL, no network)."""
import hashlib
import importlib

import pytest

from backend.engines.lama import TORCHSCRIPT_NAME, find_weights


@pytest.fixture
def install(monkeypatch):
    mod = importlib.import_module("install")
    if not hasattr(mod, "download_lama"):
        pytest.skip("install.py has no download_lama yet")
    return mod


def test_download_checks_md5_and_is_idempotent(install, tmp_path, monkeypatch, capsys):
    blob = bytes(range(256)) * 9000
    src = tmp_path / "src.pt"
    src.write_bytes(blob)
    monkeypatch.setenv("LAMA_MODEL_URL", src.as_uri())
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(blob).hexdigest())
    home = tmp_path / "home"
    dest = install.download_lama(home)
    assert dest == home / "weights" / TORCHSCRIPT_NAME and dest.read_bytes() == blob
    assert find_weights(home / "weights") == dest
    install.download_lama(home)            # already there: not fetched again
    assert "already there" in capsys.readouterr().out


def test_download_with_a_wrong_md5_leaves_nothing(install, tmp_path, monkeypatch):
    src = tmp_path / "src.pt"
    src.write_bytes(b"x" * 1000)
    monkeypatch.setenv("LAMA_MODEL_URL", src.as_uri())
    monkeypatch.setenv("LAMA_MODEL_MD5", "0" * 32)
    with pytest.raises(SystemExit, match="damaged"):
        install.download_lama(tmp_path / "home")
    assert not any((tmp_path / "home" / "weights").iterdir())


def test_unreachable_url_says_what_to_do(install, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMA_MODEL_URL", (tmp_path / "missing.pt").as_uri())
    with pytest.raises(SystemExit, match="put it at"):
        install.download_lama(tmp_path / "home")
