"""sshrun: launch torchrun across a cluster over SSH and treat it as one job."""

__version__ = "0.1.0"
