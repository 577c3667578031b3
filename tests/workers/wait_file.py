"""Every rank prints a ready line, then waits (bounded, WAIT_SECONDS, default 60) until the
path given as its first argument exists, and exits 0; if the path never appears it exits 4."""
import os
import sys
import time

rank = int(os.environ.get("RANK", "0"))
flag = sys.argv[1]
print(f"rank {rank} pid {os.getpid()} ready", flush=True)
deadline = time.monotonic() + float(os.environ.get("WAIT_SECONDS", "60"))
while not os.path.exists(flag):
    if time.monotonic() >= deadline:
        print(f"rank {rank} gave up waiting for {flag}", flush=True)
        sys.exit(4)
    time.sleep(0.05)
print(f"rank {rank} saw the flag", flush=True)
