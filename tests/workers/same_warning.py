"""Every rank prints the same warning on stderr, then its own line on stdout (the
console's --ranks, --timestamps and folding tests)."""
import os
import sys

rank = os.environ["RANK"]
print("UserWarning: the same warning on every rank", file=sys.stderr, flush=True)
print(f"rank {rank} done", flush=True)
