"""Fails (exit FLAKY_CODE, default 3) on every attempt before FLAKY_UNTIL (default 1)."""
import os
import sys

attempt = int(os.environ["SSHRUN_ATTEMPT"])
rank = os.environ.get("RANK", os.environ.get("SSHRUN_NODE_RANK"))
print(f"attempt {attempt} rank {rank}", flush=True)
if attempt < int(os.environ.get("FLAKY_UNTIL", "1")) and rank == "1":
    sys.exit(int(os.environ.get("FLAKY_CODE", "3")))
