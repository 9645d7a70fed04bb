"""Runs INSIDE Krita (loaded by the test-only plug-in krita_test_plugin/ when SIMPSON_KRITA_DRIVER
names this file): drives the real plug-in end to end and writes what it sees to $SIMPSON_KRITA_OUT
for test_krita.py to check.

Outputs: report.json (steps, messages, layer names, undo texts), sel-<step>.u8 (selection masks,
width*height bytes), erased.bgra / original.bgra (layer pixels), window.png (screenshot),
krita-status.txt ("OK" or "FAIL" + traceback). Krita quits at the end.
"""
from __future__ import annotations

import faulthandler
import importlib
import json
import os
import sys
import time
import traceback

from krita import Krita
from PyQt5.QtCore import QEvent, QPointF, Qt, QTimer
from PyQt5.QtGui import QKeyEvent, QMouseEvent
from PyQt5.QtTest import QTest
from PyQt5.QtWidgets import QApplication, QDockWidget, QProgressBar, QPushButton, QWidget

OUT = os.environ.get("SIMPSON_KRITA_OUT", "/tmp")
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
ZOOM, ROTATION, MIRROR = 1.6, 30.0, True          # view state for the clicks


def log(*args) -> None:
    print("simpson-krita-driver:", *args, flush=True)
    with open(os.path.join(OUT, "driver-log.txt"), "a") as f:
        print(*args, file=f)


class Runner:
    """Runs a generator script on Krita's event loop: `yield ms` waits, `yield (predicate, seconds)` polls."""

    alive: list = []    # PyQt holds bound-method slots weakly: keep runners referenced

    def __init__(self, gen, finish):
        self.gen, self.finish = gen, finish
        Runner.alive.append(self)

    def step(self, value=None) -> None:
        try:
            cmd = self.gen.send(value)
            frame = self.gen.gi_frame
            log("wait", cmd if isinstance(cmd, int) else f"{cmd[1]} s", "at line", frame.f_lineno if frame else "?")
        except StopIteration:
            return self.finish("OK")
        except Exception:
            return self.finish("FAIL\n" + traceback.format_exc())
        if isinstance(cmd, int):
            QTimer.singleShot(cmd, self.step)
        else:
            pred, seconds = cmd
            self.poll(pred, int(seconds * 1000 / 50))

    def poll(self, pred, left: int) -> None:
        try:
            ok = pred()
        except Exception:
            return self.finish("FAIL\n" + traceback.format_exc())
        if ok:
            return QTimer.singleShot(0, self.step)
        if left <= 0:
            try:
                self.gen.throw(TimeoutError("condition not met in time"))
            except Exception:
                return self.finish("FAIL\n" + traceback.format_exc())
            return self.finish("FAIL\nthe script swallowed a timeout")
        QTimer.singleShot(50, lambda: self.poll(pred, left - 1))


def start(ext) -> None:
    """Called once Krita's extensions are set up (ext: SimpSON Erase's); waits for a document with a
    view, then runs the script."""
    app = Krita.instance()
    report: dict = {"steps": []}
    # Errors in Qt callbacks go to the log (Krita's own hook shows a dialog); a hang dumps every thread.
    sys.excepthook = lambda etype, value, tb: log("UNCAUGHT", "".join(traceback.format_exception(etype, value, tb)))
    faulthandler.dump_traceback_later(float(os.environ.get("SIMPSON_TEST_HANG_DUMP", "150")), exit=False,
                                      file=open(os.path.join(OUT, "hang-traceback.txt"), "w"))

    def finish(status: str) -> None:
        log(status)
        try:
            with open(os.path.join(OUT, "report.json"), "w") as f:
                json.dump(report, f, indent=1)
        finally:
            with open(os.path.join(OUT, "krita-status.txt"), "w") as f:
                f.write(status + "\n")
            for d in app.documents():
                d.setModified(False)
            QTimer.singleShot(5000, QApplication.instance().quit)
            app.action("file_quit").trigger()

    def ready() -> bool:
        win = app.activeWindow()
        return app.activeDocument() is not None and win is not None and win.activeView() is not None

    def wait_ready(left=400):
        if ready():
            Runner(script(ext, app, report), finish).step()
        elif left:
            QTimer.singleShot(250, lambda: wait_ready(left - 1))
        else:
            finish("FAIL\nno document/view appeared")
    QTimer.singleShot(500, wait_ready)


# ---------------------------------------------------------------- helpers
def canvas_of(win) -> QWidget:
    found = [w for w in win.qwindow().findChildren(QWidget)
             if w.metaObject().className() in CANVAS_CLASSES and w.isVisible()]
    assert found, "no canvas widget"
    return found[-1]


def widget_point(view, x: float, y: float) -> QPointF:
    """Image point -> canvas widget point: the README's proven recipe (independent of the plug-in's maths)."""
    flake = view.flakeToImageTransform().inverted()[0].map(QPointF(x, y))
    return view.flakeToCanvasTransform().map(flake)


def click(canvas: QWidget, pt: QPointF, modifiers=Qt.NoModifier) -> None:
    gpt = QPointF(canvas.mapToGlobal(pt.toPoint()))
    for etype, button, buttons in ((QEvent.MouseMove, Qt.NoButton, Qt.NoButton),
                                   (QEvent.MouseButtonPress, Qt.LeftButton, Qt.LeftButton),
                                   (QEvent.MouseButtonRelease, Qt.LeftButton, Qt.NoButton)):
        QApplication.sendEvent(canvas, QMouseEvent(etype, pt, gpt, button, buttons, modifiers))


def selection_bytes(doc) -> bytes:
    s = doc.selection()
    n = doc.width() * doc.height()
    return bytes(s.pixelData(0, 0, doc.width(), doc.height())) if s is not None else bytes(n)


def save_selection(doc, name: str, report: dict, ext) -> None:
    """sel-NAME.u8 + a report step: pixels selected, the plug-in's last message, Krita's undo text."""
    data = selection_bytes(doc)
    with open(os.path.join(OUT, f"sel-{name}.u8"), "wb") as f:
        f.write(data)
    report["steps"].append({"name": name, "selected": sum(data.count(bytes([v])) for v in range(128, 256)),
                            "message": ext.last_message, "undo": Krita.instance().action("edit_undo").text()})
    log(name, report["steps"][-1])


def idle(ext):
    """Predicate: the plug-in has no request running and nothing left to apply."""
    return lambda: not ext.worker.busy and ext.worker.hold <= 0


def show_docker(win) -> bool:
    for dock in win.qwindow().findChildren(QDockWidget):
        if dock.windowTitle() == "SimpSON Erase":
            dock.show()
            dock.raise_()
            return True
    return False


# ---------------------------------------------------------------- the script
def script(ext, app, report):
    app.setBatchmode(True)
    win = app.activeWindow()
    doc = app.activeDocument()
    doc.waitForDone()
    view = win.activeView()
    w, h = doc.width(), doc.height()
    centres = json.loads(os.environ.get("SIMPSON_TEST_DISCS", "[]"))
    report.update(size=[w, h], model=doc.colorModel(), depth=doc.colorDepth())
    report["docker"] = show_docker(win)
    menus = {}
    for top in win.qwindow().menuBar().actions():
        if top.menu() is not None:
            for a in top.menu().actions():
                if a.objectName().startswith("simpson_erase"):
                    menus[a.objectName()] = [top.objectName(), a.shortcut().toString()]
    report["menus"] = menus
    with open(os.path.join(OUT, "original.bgra"), "wb") as f:
        f.write(bytes(doc.activeNode().pixelData(0, 0, w, h)))
    yield (lambda: ext.backend_status != "Backend: not checked yet", 20)

    report["backend"] = ext.backend_status

    # View: zoomed, rotated and mirrored, so the click mapping is really exercised.
    canvas_api = view.canvas()
    canvas_api.setZoomLevel(ZOOM)
    canvas_api.setRotation(ROTATION)
    canvas_api.setMirror(MIRROR)
    yield 500
    canvas = canvas_of(win)
    report["view"] = {"zoom": canvas_api.zoomLevel(), "rotation": canvas_api.rotation(), "mirror": canvas_api.mirror(),
                      "canvas": canvas.metaObject().className(), "dpr": canvas.devicePixelRatioF()}

    # Reference: Krita's own magic wand, clicked with the same recipe, must select disc 0 too.
    (cx, cy), (c1x, c1y) = centres[0], centres[1]
    app.action("KisToolSelectContiguous").trigger()
    yield 300
    click(canvas, widget_point(view, cx + 0.5, cy + 0.5))
    yield 800
    doc.waitForDone()
    save_selection(doc, "wand", report, ext)
    app.action("deselect").trigger()
    doc.waitForDone()
    yield 300

    # One-click tool from its action: click, Shift-click (add), Alt-click (subtract).
    report["shortcuts"] = {a: app.action(a).shortcut().toString() for a in
                           ("simpson_erase_tool", "simpson_erase_similar", "simpson_erase_erase")}
    app.action("simpson_erase_tool").trigger()
    assert ext.tool.active, "the tool action did not turn the tool on"
    click(canvas, widget_point(view, cx + 0.5, cy + 0.5))
    yield (idle(ext), 60)
    yield 200
    save_selection(doc, "click", report, ext)
    first_read = ext._tool_layer
    click(canvas, widget_point(view, c1x + 0.5, c1y + 0.5), Qt.ShiftModifier)
    yield (idle(ext), 60)
    save_selection(doc, "shift", report, ext)
    # the layer is unchanged: the Shift-click's read gives back the first click's pixels, hash and all;
    # they travel as Krita gives them (BGRA), the very bytes it read
    report["tool_layer"] = {"kept": first_read is not None, "reused": ext._tool_layer is first_read,
                            "hashed": bool(first_read is not None and first_read.image._hash),
                            "format": first_read.image.format if first_read is not None else None,
                            "as_read": first_read is not None and first_read.image.data.obj is first_read.bgra}
    click(canvas, widget_point(view, c1x + 0.5, c1y + 0.5), Qt.AltModifier)
    yield (idle(ext), 60)
    save_selection(doc, "alt", report, ext)
    report["layers_after_clicks"] = [n.name() for n in doc.topLevelNodes()]
    QApplication.sendEvent(canvas, QKeyEvent(QEvent.KeyPress, Qt.Key_Escape, Qt.NoModifier))
    report["tool_after_esc"] = ext.tool.active
    report["tool_layer"]["after_esc"] = ext._tool_layer is None

    # Select Similar with the likeness at 1: no other disc scores that high, the selection stays disc 0.
    ext.options.min_score = 1.0
    app.action("simpson_erase_similar").trigger()
    yield (idle(ext), 60)
    save_selection(doc, "similar_strict", report, ext)
    ext.options.min_score = -1.0

    # Select Similar from its action, then undo / redo.
    app.action("simpson_erase_similar").trigger()
    yield (idle(ext), 60)
    save_selection(doc, "similar", report, ext)
    app.action("edit_undo").trigger()
    doc.waitForDone()
    yield 300
    save_selection(doc, "undo", report, ext)
    app.action("edit_redo").trigger()
    doc.waitForDone()
    yield 300
    save_selection(doc, "redo", report, ext)

    # Erase from its action, with another layer on top: the result goes just above the active layer.
    background = doc.activeNode()
    top = doc.createNode("Top", "paintlayer")
    doc.rootNode().addChildNode(top, None)
    yield 300
    doc.setActiveNode(background)
    yield 300
    active_before = doc.activeNode().name()
    app.action("simpson_erase_erase").trigger()
    yield (idle(ext), 120)
    yield 500
    doc.waitForDone()
    report["erase_message"] = ext.last_message
    report["layers"] = [n.name() for n in doc.topLevelNodes()]
    report["active_before_erase"] = active_before
    report["active_after_erase"] = doc.activeNode().name()
    erased = doc.nodeByName("SimpSON Erase")
    assert erased is not None, f"no result layer: {report['layers']} / {ext.last_message}"
    with open(os.path.join(OUT, "erased.bgra"), "wb") as f:
        f.write(bytes(erased.pixelData(0, 0, w, h)))

    # Screenshot with the docker showing (the 8-bit image, its erased layer, the selection).
    win.qwindow().resize(1240, 860)
    show_docker(win)
    app.action("zoom_to_fit").trigger()
    canvas_api.setRotation(0.0)
    canvas_api.setMirror(False)
    yield 800
    win.qwindow().grab().save(os.path.join(OUT, "window.png"))

    # Shortcuts: Ctrl+Alt+O turns the tool on (QTest goes through Qt's shortcut map), Esc leaves.
    QApplication.setActiveWindow(win.qwindow())      # no window manager under Xvfb: make it active
    canvas.setFocus()
    yield 300
    report["focus"] = [QApplication.focusWidget().metaObject().className() if QApplication.focusWidget() else None,
                       QApplication.activeWindow() is win.qwindow()]
    QTest.keyClick(canvas, Qt.Key_O, Qt.ControlModifier | Qt.AltModifier)
    yield 200
    report["tool_after_shortcut"] = ext.tool.active
    QTest.keyClick(canvas, Qt.Key_Escape)
    yield 200
    report["tool_after_shortcut_esc"] = ext.tool.active

    # Off the GUI thread: a slow request leaves Krita responsive, shows progress, and the docker's Cancel stops it.
    package = type(ext).__module__.rsplit(".", 1)[0]
    Job = importlib.import_module(package + ".worker").Job
    Cancelled = importlib.import_module(package + ".simpson_client").Cancelled
    dock = next(d for d in win.qwindow().findChildren(QDockWidget) if d.windowTitle() == "SimpSON Erase")
    cancel_button = next(b for b in dock.findChildren(QPushButton) if b.text() == "Cancel")
    bar = dock.findChildren(QProgressBar)[0]

    def slow(client, progress):
        for i in range(400):
            if progress(i / 400, f"Working {i}") is False:
                raise Cancelled("Cancelled.")
            time.sleep(0.025)
        return "finished"
    outcome: list = []
    ticks = [0]
    ticker = QTimer()
    ticker.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    ticker.start(20)
    ext.worker.submit(Job("Slow test request", slow, outcome.append, outcome.append))
    yield 1500
    report["responsive"] = {"ticks_in_1.5s": ticks[0], "busy": ext.worker.busy,
                            "cancel_enabled": cancel_button.isEnabled(), "progress": bar.value()}
    cancel_button.click()
    yield (idle(ext), 10)
    ticker.stop()
    report["cancel"] = {"outcome": outcome, "cancel_enabled": cancel_button.isEnabled(), "busy": ext.worker.busy}

    # 16-bit document whose layer is moved by OFFSET: click a disc (at its moved place), erase.
    offset = (12, 8)
    orig = open(os.path.join(OUT, "original.bgra"), "rb").read()
    wide = bytearray(len(orig) * 2)
    wide[0::2] = orig                     # v -> v * 257, little-endian u16
    wide[1::2] = orig
    doc16 = app.createDocument(w, h, "sixteen", "RGBA", "U16", "", 72.0)
    layer16 = doc16.topLevelNodes()[0]
    layer16.setPixelData(bytes(wide), 0, 0, w, h)
    layer16.move(*offset)
    doc16.refreshProjection()
    win.addView(doc16)
    yield (lambda: app.activeDocument() is not None and app.activeDocument().name() == "sixteen"
           and win.activeView() is not None, 10)
    yield 500
    doc16 = app.activeDocument()
    doc16.setActiveNode(doc16.topLevelNodes()[0])
    view16 = win.activeView()
    view16.canvas().setZoomLevel(0.8)
    yield 500
    canvas16 = canvas_of(win)
    (c2x, c2y) = centres[2]
    ext.tool.set_active(True)
    click(canvas16, widget_point(view16, c2x + offset[0] + 0.5, c2y + offset[1] + 0.5))
    yield (idle(ext), 60)
    yield 200
    save_selection(doc16, "click16", report, ext)
    report["layer16"] = {"depth": doc16.topLevelNodes()[0].colorDepth(), "position": [layer16.position().x(),
                         layer16.position().y()], "bounds": [doc16.topLevelNodes()[0].bounds().x(),
                         doc16.topLevelNodes()[0].bounds().y()]}
    app.action("simpson_erase_erase").trigger()
    yield (idle(ext), 120)
    yield 500
    doc16.waitForDone()
    report["layers16"] = [n.name() for n in doc16.topLevelNodes()]
    report["erase16_message"] = ext.last_message
    erased16 = doc16.nodeByName("SimpSON Erase")
    assert erased16 is not None, f"no 16-bit result layer: {report['layers16']} / {ext.last_message}"
    report["erased16_depth"] = erased16.colorDepth()
    with open(os.path.join(OUT, "erased16.bgra"), "wb") as f:
        f.write(bytes(erased16.pixelData(0, 0, w, h)))

    # On-demand start: without SIMPSON_ENDPOINT the plug-in reads config.json, where no daemon runs yet;
    # the shared client starts one (inside the root) and the click goes through.
    if os.environ.get("SIMPSON_TEST_AUTOSTART"):
        test_daemon = os.environ.pop("SIMPSON_ENDPOINT", None)
        settings = importlib.import_module(package + ".simpson_client.settings").load()
        (c3x, c3y) = centres[3]
        click(canvas16, widget_point(view16, c3x + offset[0] + 0.5, c3y + offset[1] + 0.5))
        yield (idle(ext), 120)
        yield 200
        save_selection(doc16, "autostart", report, ext)
        ext.check_backend()
        yield (lambda: ext.backend_status.startswith("Backend: ready"), 10)
        report["autostart"] = {"endpoint_env": os.environ.get("SIMPSON_ENDPOINT"), "test_daemon": test_daemon,
                               "config_endpoint": settings.endpoint, "message": report["steps"][-1]["message"],
                               "backend": ext.backend_status}
    ext.tool.set_active(False)

    # A greyscale document: a clear sentence, nothing changed.
    grey = app.createDocument(64, 48, "grey", "GRAYA", "U8", "", 72.0)
    win.addView(grey)
    yield (lambda: app.activeDocument() is not None and app.activeDocument().name() == "grey", 10)
    yield 300
    app.action("simpson_erase_erase").trigger()
    yield 200
    report["grey_message"] = ext.last_message
    report["grey_layers"] = [n.name() for n in app.activeDocument().topLevelNodes()]
