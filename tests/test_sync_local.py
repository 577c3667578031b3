"""--sync on the embedded asyncssh cluster: no SFTP subsystem there, and its nodes share
one filesystem, so their syncs to one destination take turns and only the first sends."""

from __future__ import annotations

import json
from pathlib import Path

from head import run_sshrun


def test_nodes_sharing_a_destination_sync_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.txt").write_text("shared\n")
    dest = tmp_path / "dest"
    events = tmp_path / "ev.jsonl"
    code, head = run_sshrun(["exec", "--local-cluster", "3", f"--sync={src}", "--workdir",
                             str(dest), "--events", str(events), "--", "cat", "pkg/a.txt"],
                            cwd=tmp_path)
    assert code == 0, head.transcript()
    assert sum(line.endswith("| shared") for line in head.out) == 3, head.transcript()
    finished = [e for e in map(json.loads, events.read_text().splitlines())
                if e["event"] == "sync_finished"]
    assert sorted(e["files"] for e in finished) == [0, 0, 1], finished
    assert dest.is_symlink()
    assert len(list(tmp_path.glob("dest.sshrun-*"))) == 1
