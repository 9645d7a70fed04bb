"""Krita plug-in for test profiles only (tests/editors/krita_harness.py installs it; users never
get it). Once every extension is set up, it runs the Python file $SIMPSON_KRITA_DRIVER names
(tests/editors/krita_driver.py): that file's start(ext) gets SimpSON Erase's extension from its
public simpson_erase.extension.instance() and drives the real plug-in."""
import importlib.util
import os

from krita import Extension, Krita
from PyQt5.QtCore import QTimer


class TestDriver(Extension):
    def setup(self) -> None:
        QTimer.singleShot(0, self.start)    # after every extension's setup(), on the event loop

    def createActions(self, window) -> None:  # noqa: N802 - Krita's name
        pass

    def start(self) -> None:
        path = os.environ.get("SIMPSON_KRITA_DRIVER")
        if not path:
            return
        from simpson_erase import extension
        spec = importlib.util.spec_from_file_location("simpson_erase_test_driver_script", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.start(extension.instance())


Krita.instance().addExtension(TestDriver(Krita.instance()))
