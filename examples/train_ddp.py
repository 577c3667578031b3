"""A small, real DistributedDataParallel training run (gloo on CPU, NCCL on GPUs).

Every rank fits the same linear model to its own shard of a synthetic
regression problem; DDP averages the gradients, so all ranks hold identical
parameters after every step. Rank 0 prints the loss, which goes down; every
rank prints a digest of its final parameters so that a test (or you) can
check that all ranks agree.

    sshrun --local-cluster 2 --nproc-per-node 2 examples/train_ddp.py --epochs 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    # The same true weights everywhere, a different data shard per rank.
    torch.manual_seed(0)
    true_w = torch.randn(args.features, 1)
    model = torch.nn.Linear(args.features, 1).to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1000 + rank)

    for epoch in range(1, args.epochs + 1):
        total = torch.zeros(1, device=device)
        for _ in range(args.steps):
            x = torch.randn(args.batch, args.features, generator=gen)
            y = x @ true_w + 0.01 * torch.randn(args.batch, 1, generator=gen)
            x, y = x.to(device), y.to(device)
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
        dist.all_reduce(total)
        mean = total.item() / (args.steps * world)
        if rank == 0:
            print(f"epoch {epoch} loss {mean:.6f}", flush=True)

    flat = torch.cat([p.detach().cpu().flatten() for p in model.parameters()])
    # The raw bytes of every parameter, without needing numpy.
    digest = hashlib.sha256(bytes(flat.contiguous().view(torch.uint8).tolist())).hexdigest()[:16]
    print(f"rank {rank} final-params {digest}", flush=True)
    # Leave together, and skip interpreter finalization: with torch 2.13 and
    # gloo, an atexit-time teardown of c10d objects aborts about one rank exit
    # in twenty ("terminate called without an active exception", SIGABRT),
    # which would turn a finished run into a failed job.
    del ddp, opt
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
