"""The backend's state in one line, from its `info` reply, for both plug-ins (Krita's docker,
GIMP's Select Object dialog): where the daemon runs its models, and any ready engine that runs
somewhere else (an engine without a model, or a model that did not fit on the GPU, runs on the CPU)."""
from __future__ import annotations

from typing import Any


def backend_line(info: dict[str, Any]) -> str:
    """'Backend: ready on cuda (dsn, features, lama, pvm; builtin, classic on cpu)'."""
    device = str(info.get("device") or "?")
    engines = info.get("engines") or {}
    ready = sorted(n for n, e in engines.items() if isinstance(e, dict) and e.get("status") == "ready")
    if not ready:
        return f"Backend: ready on {device} (no engine ready)"
    where: dict[str, list[str]] = {}
    for name in ready:
        where.setdefault(str(engines[name].get("device") or device), []).append(name)
    parts = [", ".join(where.pop(device, []))] + [f"{', '.join(names)} on {d}" for d, names in sorted(where.items())]
    return f"Backend: ready on {device} ({'; '.join(p for p in parts if p)})"
