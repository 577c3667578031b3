"""``signal`` for the agent's modules: the standard module's C half, ``_signal``.

It has the same functions and numbers as ``signal``, without the enums that
make importing ``signal`` (and with it ``enum``) cost a node ~2 ms of every
agent's start. The type checker sees ``signal`` itself.

Runs on the node: standard library only, Python 3.8.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

__all__ = ["signal"]
