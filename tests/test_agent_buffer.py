"""The agent's queue for the head (sshrun/node/buffer.py), on a real pipe that fills.

Output is written to stdout at once from the reader's own buffer when nothing
is queued, and only what the pipe does not take is copied; the reader then
reuses that buffer. Run in a child whose stdout is a pipe cut to one page:
every frame must reach the other end whole, in order, with the bytes it had
when it was read, however the writes were cut.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sshrun.node import protocol

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import fcntl, os, selectors
from sshrun.node.buffer import OutputBuffer
from sshrun.node.protocol import Heartbeat

os.set_blocking(1, False)
fcntl.fcntl(1, 1031, 4096)  # F_SETPIPE_SZ: one page, so that writes are cut
sel = selectors.DefaultSelector()
out = OutputBuffer(sel, lambda paused: None)
buf = memoryview(bytearray(100000))
for k in range(300):
    n = 1 + (k * 7919) % 100000
    buf[:n] = bytes([k % 251]) * n
    out.output(1 + k % 2, k % 5, buf[:n])
    if k % 7 == 0:
        out.event(Heartbeat())  # events go the same way, in order
    buf[:] = b"\\xff" * len(buf)  # the reader's buffer, reused for the next read
    for _ in sel.select(0):
        out.flush_some()
while out.chunks:
    sel.select(5)
    out.flush_some()
"""


def test_frames_arrive_whole_and_in_order_from_a_reused_buffer() -> None:
    done = subprocess.run([sys.executable, "-S", "-c", CHILD], capture_output=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    data, k, heartbeats = memoryview(done.stdout), 0, 0
    while data:
        kind, stream, source, size = protocol.HEADER.unpack_from(data)
        payload = bytes(data[protocol.HEADER.size:protocol.HEADER.size + size])
        data = data[protocol.HEADER.size + size:]
        if kind == protocol.KIND_EVENT:
            assert payload == b'{"type": "hb"}' and heartbeats == (k + 6) // 7 - 1, k
            heartbeats += 1
            continue
        _, chunk = protocol.decode_output(payload)
        n = 1 + (k * 7919) % 100000
        assert (kind, stream, source) == (protocol.KIND_OUTPUT, 1 + k % 2, k % 5), k
        assert chunk == bytes([k % 251]) * n, f"frame {k}: {len(chunk)} bytes, {chunk[:8]!r}"
        k += 1
    assert (k, heartbeats) == (300, 43)
