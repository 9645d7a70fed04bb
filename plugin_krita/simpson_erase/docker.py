"""The SimpSON Erase docker: backend status, the tool and action buttons, engine, likeness, dilation,
progress, cancel."""
from __future__ import annotations

from krita import DockWidget
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar,
                             QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from . import extension
from .simpson_client.protocol import MAX_DILATION

DOCKER_ID = "simpson_erase_docker"
AUTOMATIC = -0.05   # the likeness box's lowest value, shown as "Automatic"


class SimpsonDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("SimpSON Erase")
        self.ext = extension.instance()
        root = QWidget(self)
        box = QVBoxLayout(root)

        self.backend = QLabel("Backend: not checked yet")
        self.backend.setWordWrap(True)
        refresh = QToolButton()
        refresh.setText("↻")
        refresh.setToolTip("Check the backend again")
        refresh.clicked.connect(self.ext.check_backend)
        row = QHBoxLayout()
        row.addWidget(self.backend, 1)
        row.addWidget(refresh)
        box.addLayout(row)

        self.tool = QPushButton("One-click select")
        self.tool.setCheckable(True)
        self.tool.setToolTip("Click an object on the canvas to select it; Shift adds, Alt subtracts, Esc leaves "
                             "(Ctrl+Alt+O)")
        self.tool.toggled.connect(self.ext.tool.set_active)
        self.ext.tool.toggled.connect(self._tool_toggled)
        similar = QPushButton("Select similar")
        similar.setToolTip("Select every object that looks like the selected one (Ctrl+Alt+M)")
        similar.clicked.connect(self.ext.select_similar)
        erase = QPushButton("Erase")
        erase.setToolTip("Remove the selected pixels into a new layer above the active one (Ctrl+Alt+E)")
        erase.clicked.connect(self.ext.erase)
        box.addWidget(self.tool)
        row = QHBoxLayout()
        row.addWidget(similar)
        row.addWidget(erase)
        box.addLayout(row)

        form = QFormLayout()
        self.engine = QComboBox()
        self.engine.setToolTip("Which backend engine does the work (Automatic = the backend's choice)")
        self.dilation = QSpinBox()
        self.dilation.setRange(-1, MAX_DILATION)
        self.dilation.setSpecialValueText("Automatic")
        self.dilation.setSuffix(" px")
        self.dilation.setToolTip("How far Erase grows the hole around the selection")
        self.dilation.setValue(self.ext.options.dilation)
        self.dilation.valueChanged.connect(self._options_changed)
        self.likeness = QDoubleSpinBox()
        self.likeness.setRange(AUTOMATIC, 1.0)
        self.likeness.setSingleStep(0.05)
        self.likeness.setDecimals(2)
        self.likeness.setSpecialValueText("Automatic")
        self.likeness.setToolTip("How alike Select Similar's objects must be (0-1): lower finds copies that "
                                 "differ more, and more objects that are not copies")
        self.likeness.setValue(self.ext.options.min_score if self.ext.options.min_score >= 0 else AUTOMATIC)
        self.likeness.valueChanged.connect(self._options_changed)
        form.addRow("Engine", self.engine)
        form.addRow("Likeness", self.likeness)
        form.addRow("Dilation", self.dilation)
        box.addLayout(form)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.ext.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel)
        box.addLayout(row)
        self.status = QLabel(self.ext.last_message)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        box.addWidget(self.status)
        box.addStretch(1)
        self.setWidget(root)

        self._fill_engines(sorted(self.ext.engines))
        self.engine.currentIndexChanged.connect(self._options_changed)
        self._backend_changed(self.ext.backend_status, sorted(self.ext.engines))
        self.ext.backend_changed.connect(self._backend_changed)
        self.ext.message.connect(self.status.setText)
        self.ext.worker.progress.connect(self._progress)
        self.ext.worker.busy_changed.connect(self._busy)
        self._tool_toggled(self.ext.tool.active)

    def canvasChanged(self, canvas) -> None:  # noqa: N802 - Krita's name
        pass

    def _fill_engines(self, names: list[str]) -> None:
        self.engine.blockSignals(True)
        self.engine.clear()
        self.engine.addItem("Automatic", "")
        wanted = self.ext.options.engine
        for name in sorted(set(names) | ({wanted} if wanted else set())):
            self.engine.addItem(name, name)
        self.engine.setCurrentIndex(max(0, self.engine.findData(wanted)))
        self.engine.blockSignals(False)

    def _backend_changed(self, text: str, engines: list) -> None:
        self.backend.setText(text)
        self._fill_engines(list(engines))

    def _options_changed(self, *_) -> None:
        self.ext.options.engine = self.engine.currentData() or ""
        self.ext.options.dilation = self.dilation.value()
        likeness = self.likeness.value()
        self.ext.options.min_score = -1.0 if likeness < 0 else likeness
        self.ext.options.save(self.ext.app)

    def _progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if text:
            self.status.setText(text)

    def _busy(self, busy: bool) -> None:
        self.cancel.setEnabled(busy)
        if not busy:
            self.progress.setValue(0)

    def _tool_toggled(self, on: bool) -> None:
        if self.tool.isChecked() != on:
            self.tool.blockSignals(True)
            self.tool.setChecked(on)
            self.tool.blockSignals(False)
