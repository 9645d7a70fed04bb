"""SimpSON Erase for Krita 5.2: one-click selection, Select Similar, Erase (see extension.py)."""
from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

from .docker import DOCKER_ID, SimpsonDocker
from .extension import SimpsonErase

_app = Krita.instance()
_app.addExtension(SimpsonErase(_app))
_app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, SimpsonDocker))
