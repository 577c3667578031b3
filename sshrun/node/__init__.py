"""What runs on a node: the agent's parts and the scripts it writes for torchrun.

Standard library only and Python 3.8 compatible, every file: the head ships
them as text (``sshrun.agent.BUNDLE``), beside the same compiled by the
head's interpreter (``sshrun.agent.payload()``), to nodes that have neither
sshrun nor a recent Python. The head imports ``protocol`` and ``records``
itself; the rest runs only on the nodes (and in tests).
"""
