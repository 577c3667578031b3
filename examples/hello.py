"""A tiny job for the API examples (docs/api.md): each rank says who it is."""
import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
print(f"rank {rank} of {world}: lr {args.lr}", flush=True)
