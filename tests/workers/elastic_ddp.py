"""Attempt 0: every rank prints "ready" and waits (bounded) to be stopped.
Later attempts: a real gloo all_reduce across whatever nodes the attempt has,
then every rank prints the world size, the sum and its host."""
import os
import time

attempt = int(os.environ["SSHRUN_ATTEMPT"])
if attempt == 0:
    print("ready", flush=True)
    time.sleep(120)
    raise SystemExit(1)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

dist.init_process_group("gloo")
value = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(value)
print(f"world {dist.get_world_size()} sum {value.item():g} "
      f"host {os.environ['SSHRUN_HOST']} endpoint {os.environ['MASTER_ADDR']}", flush=True)
dist.barrier()
dist.destroy_process_group()
# torch 2.13's gloo can abort at interpreter exit after destroy (see examples/train_ddp.py).
os._exit(0)
