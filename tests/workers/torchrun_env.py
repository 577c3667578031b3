"""Prints what torchrun told this rank, on stdout and stderr: RANK, LOCAL_RANK, ROLE_NAME,
WORLD_SIZE and MASTER_PORT; even ranks add the word MARKED to their stdout line."""
import os
import sys

env = os.environ
rank = int(env["RANK"])
print(f"out rank={rank} local={env['LOCAL_RANK']} role={env.get('ROLE_NAME')} "
      f"world={env['WORLD_SIZE']} port={env.get('MASTER_PORT')}"
      + (" MARKED" if rank % 2 == 0 else ""), flush=True)
print(f"err rank={rank}", file=sys.stderr, flush=True)
