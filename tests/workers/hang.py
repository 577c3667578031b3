"""Every rank prints a ready line, then waits (bounded) to be stopped.
IGNORE_TERM=1 makes it ignore SIGTERM; DAEMON=1 first double-forks a daemon that
sleeps (bounded) in a new session and writes its pid to DAEMON_PIDFILE_DIR."""
import os
import signal
import time

rank = int(os.environ.get("RANK", "0"))
if os.environ.get("IGNORE_TERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("DAEMON") == "1":
    # The daemon tells its pid through a pipe, so that "ready" means it exists.
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            time.sleep(300)
            os._exit(0)
        os._exit(0)
    os.close(w)
    os.wait()
    daemon_pid = os.read(r, 32).decode()
    os.close(r)
    d = os.environ.get("DAEMON_PIDFILE_DIR")
    if d:
        with open(os.path.join(d, f"daemon-{rank}.pid"), "w") as f:
            f.write(daemon_pid)
print(f"rank {rank} pid {os.getpid()} ready", flush=True)
time.sleep(float(os.environ.get("HANG_SECONDS", "300")))
print(f"rank {rank} done", flush=True)
