"""One line on stdout and one on stderr (each with LOG_SECRET, if set), and a progress
bar; rank 1 fails with exit 3 in every attempt before the first restart."""
import os
import sys

attempt = int(os.environ["SSHRUN_ATTEMPT"])
rank = os.environ.get("RANK", os.environ.get("SSHRUN_NODE_RANK"))
secret = os.environ.get("LOG_SECRET", "")
print(f"out attempt {attempt} rank {rank} {secret}".rstrip(), flush=True)
print(f"err attempt {attempt} rank {rank} {secret}".rstrip(), file=sys.stderr, flush=True)
sys.stdout.write("bar 1%\rbar 50%\rbar 100%\n")
sys.stdout.flush()
if attempt < 1 and rank == "1":
    sys.exit(3)
