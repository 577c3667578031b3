"""Ties a process to its parent: when the parent dies, the kernel signals this process.

Shipped in front of the rank shim and the torchrun wrapper (the agent writes
each as one file: this one's source, then the script's), so that an agent or
a torchrun that is SIGKILLed takes its children with it. Linux only;
elsewhere the sweep and the heartbeat remain.

Runs on the node: standard library only, Python 3.8.
"""


def die_with_parent(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies."""
    import ctypes
    import os

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), int(sig))
