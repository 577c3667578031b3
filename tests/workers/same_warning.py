"""Every rank prints the same warning on stderr, then its own line on stdout (the
console's --ranks, --timestamps and folding tests). SAME_BARRIER=1: the ranks meet in
a gloo barrier first, so that every copy reaches the head within the fold's window."""
import os
import sys

rank = os.environ["RANK"]
if os.environ.get("SAME_BARRIER") == "1":
    import torch.distributed as dist

    dist.init_process_group("gloo")
    dist.barrier()
print("UserWarning: the same warning on every rank", file=sys.stderr, flush=True)
print(f"rank {rank} done", flush=True)
if os.environ.get("SAME_BARRIER") == "1":
    dist.destroy_process_group()
