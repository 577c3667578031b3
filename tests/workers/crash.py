"""Rank FAIL_RANK (env, default 1) fails with FAIL_CODE (default 3) after a marker line; the
others wait for the gang stop. FAIL_HOW=signal kills the rank with SIGKILL instead,
FAIL_HOW=raise raises an exception (traceback)."""
import os
import signal
import sys
import time

rank = int(os.environ["RANK"])
fail_rank = int(os.environ.get("FAIL_RANK", "1"))
how = os.environ.get("FAIL_HOW", "exit")
print(f"rank {rank} pid {os.getpid()} up", flush=True)
if rank == fail_rank:
    time.sleep(float(os.environ.get("FAIL_DELAY", "0.5")))
    print(f"rank {rank} about to fail", file=sys.stderr, flush=True)
    if how == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "raise":
        raise RuntimeError(f"boom on rank {rank}")
    sys.exit(int(os.environ.get("FAIL_CODE", "3")))
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.2)
print("survivor was never stopped", flush=True)
sys.exit(99)
