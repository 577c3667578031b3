"""``sshrun ... workers/flood.py | python stalling_reader.py RANKS LINES WIDTH DONE STALL``

Waits for the first output, reads nothing for STALL seconds more, then drains stdin as
fast as it comes and checks every line of flood.py's RANKS ranks: ``<host> r<rank> |
<rank> <i> <x * WIDTH>``, each rank's lines in order, none lost, none merged or cut.
Prints one JSON object: how many lines each rank got, when the stall began and ended
(``time.time()``), a checksum of what came and of what should have, the lines that
matched no rank, and ``held``: how many ranks had not finished writing when the stall
ended (their file in DONE absent), which back-pressure is for.
"""
import hashlib
import json
import os
import select
import sys
import time

ranks, lines, width = (int(a) for a in sys.argv[1:4])
done_dir, stall = sys.argv[4], float(sys.argv[5])
select.select([sys.stdin], [], [], 600)  # until the first output (bounded: 10 minutes)
stall_from = time.time()
time.sleep(stall)  # the stall is the point: a reader that takes nothing for a while
held = ranks - len(os.listdir(done_dir))
stall_to = time.time()
pad = "x" * width
got = [0] * ranks
digest = [hashlib.sha256() for _ in range(ranks)]
bad: list[str] = []
for raw in sys.stdin.buffer:
    line = raw.decode("utf-8", "replace").rstrip("\n")
    label, sep, body = line.partition(" | ")
    words = label.split()
    try:
        rank = int(words[-1][1:]) if sep and words[-1].startswith("r") else -1
    except ValueError:
        rank = -1
    if not 0 <= rank < ranks or body != f"{rank} {got[rank]} {pad}":
        if len(bad) < 5:
            bad.append(line[:200])
        elif len(bad) == 5:
            bad.append("...")
        continue
    digest[rank].update(body.encode() + b"\n")
    got[rank] += 1
want = [hashlib.sha256() for _ in range(ranks)]
for rank in range(ranks):
    for i in range(lines):
        want[rank].update(f"{rank} {i} {pad}\n".encode())


def total(digests):
    return hashlib.sha256(b"".join(d.digest() for d in digests)).hexdigest()


json.dump({"lines": got, "checksum": total(digest), "expected": total(want), "bad": bad,
           "held": held, "stall": [stall_from, stall_to]}, sys.stdout)
