"""A remote process whose unread output stays within about two SSH windows.

asyncssh (2.24.1 and before) sends a window adjust whenever it *delivers* a
packet to the session, sized as if everything it had accepted had been read.
Its stream session stops delivery at one window of unread data and resumes
as soon as the reader takes any of it. So with a reader slower than the node
(a console piped into a slow consumer), every 64 KiB read re-opened a whole
window: the channel's own buffer grew with the output, 24 MiB per node in
one measured 64-rank flood, and the head's memory with it (apache/mina-sshd
#292 describes the same accounting bug there).

``BoundedProcess`` resumes delivery only once the stream's buffer is empty.
A resume then moves up to a window of buffered data into the stream, and
the one window adjust it sends lets in at most a window more, so the
channel's buffer never grows past about one window and the stream's past
one window and a packet. sshrun reads a process's stderr all along, which
this needs: unread stderr counts in the stream's buffer.
"""

from __future__ import annotations

import asyncssh


class BoundedProcess(asyncssh.SSHClientProcess[bytes]):
    """``SSHClientProcess`` that waits for its buffer to empty before resuming."""

    def _maybe_resume_reading(self) -> bool:
        # _limit 0 means unlimited (asyncssh's communicate()): resume at once.
        if self._read_paused and (not self._limit or not self._recv_buf_len):
            assert self._chan is not None
            self._read_paused = False
            self._chan.resume_reading()
            return True
        return False


async def open_process(conn: asyncssh.SSHClientConnection,
                       command: str) -> asyncssh.SSHClientProcess[bytes]:
    """``conn.create_process(command, encoding=None)``, with bounded buffering."""
    _, process = await conn.create_session(BoundedProcess, command, encoding=None)
    assert isinstance(process, BoundedProcess)
    return process
