"""The minimal client printed in docs/protocol.md works against a real daemon, as written."""
import re

from tests.conftest import REPO


def test_minimal_client_from_the_doc(daemon):
    doc = (REPO / "docs" / "protocol.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[-1]
    assert 'sock.connect("tcp://127.0.0.1:5557")' in code
    code = code.replace('"tcp://127.0.0.1:5557"', repr(daemon.endpoint))
    scope: dict = {}
    exec(compile(code, "docs/protocol.md", "exec"), scope)
    mask = scope["mask"]
    assert len(mask) == 640 * 480
    selected = sum(1 for b in mask if b)
    assert 0.8 * 80 * 80 <= selected <= 1.2 * 80 * 80
    x, y, bw, bh = scope["x"], scope["y"], scope["bw"], scope["bh"]
    patch = scope["patch"]
    assert len(patch) == bw * bh * 4 and x <= 280 and y <= 200 and x + bw >= 360 and y + bh >= 280
    centre = ((240 - y) * bw + (320 - x)) * 4
    assert patch[centre] < 0x80 and patch[centre + 1] >= 0x70      # the red square is filled with green
    scope["sock"].close(0)
