"""Fails (exit FLAKY_CODE, default 3) on every attempt before FLAKY_UNTIL (default 1).

With FLAKY_SYNC_DIR (a directory every node sees: the tests' nodes share this
machine) the failing rank waits, at most 30 s, until every rank of the attempt
has printed its line, so that a test may count every rank's line; without it,
a rank may be stopped by the gang before it prints.
"""
import os
import sys
import time

attempt = int(os.environ["SSHRUN_ATTEMPT"])
rank = os.environ.get("RANK", os.environ.get("SSHRUN_NODE_RANK"))
print(f"attempt {attempt} rank {rank}", flush=True)
sync = os.environ.get("FLAKY_SYNC_DIR")
if sync:
    open(os.path.join(sync, f"a{attempt}-r{rank}"), "w").close()
if attempt < int(os.environ.get("FLAKY_UNTIL", "1")) and rank == "1":
    if sync:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(
                name.startswith(f"a{attempt}-") for name in os.listdir(sync)) < world:
            time.sleep(0.02)
    sys.exit(int(os.environ.get("FLAKY_CODE", "3")))
