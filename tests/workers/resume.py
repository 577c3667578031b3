"""Resumes from its checkpoint after a restart, reading torchrun's variables as a script would.

Every rank prints what torchrun's variables say: the restart count, the
restart budget and the run id. On restart 0 each rank writes its checkpoint
(step 5) to CKPT_DIR/<run id>/rank-<RANK>.json, and rank 1 then fails (exit
3) once every rank's checkpoint is there (at most 30 s); on a later restart
each rank reads its checkpoint back, from the same run id's folder, and says
where it resumes.
"""
import json
import os
import sys
import time

restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
budget = os.environ["TORCHELASTIC_MAX_RESTARTS"]
run_id = os.environ["TORCHELASTIC_RUN_ID"]
rank = os.environ["RANK"]
world = int(os.environ["WORLD_SIZE"])
print(f"rank {rank} restart {restart} of {budget} run {run_id} "
      f"attempt {os.environ['SSHRUN_ATTEMPT']} job {os.environ['SSHRUN_JOB_ID']}", flush=True)
folder = os.path.join(os.environ["CKPT_DIR"], run_id)
path = os.path.join(folder, f"rank-{rank}.json")
if restart == 0:
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"step": 5, "rank": rank}, f)
    os.replace(path + ".tmp", path)
    if rank == "1":
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(
                name.endswith(".json") for name in os.listdir(folder)) < world:
            time.sleep(0.02)
        sys.exit(3)
    sys.exit(0)
with open(path) as f:
    state = json.load(f)
assert state["rank"] == rank, state
print(f"rank {rank} resumed at step {state['step']}", flush=True)
