"""sshrun's errors, and the exit status each one means.

Every failure that sshrun reports to its user is one of these. Each carries
the exit status that DESIGN.md's table gives it, and its ``str()`` is the one
line the user sees (no traceback)::

    SshrunError                      (1)
    ├── ConfigError                  (2)  bad flag, hostfile, value
    │   ├── LocationError            (2)  ... with file:line:column
    │   └── NodeSetupError           (2)  a node lacks the interpreter, torch, ...
    ├── SSHError                     (255) a node could not be reached
    │   ├── ConnectError             (255) refused, unreachable, timed out
    │   ├── AuthError                (255) no accepted key
    │   └── HostKeyError             (255) unknown or changed host key
    └── AgentError                   (255) the node agent broke its protocol

A rank's own non-zero exit is not an exception: it is an outcome, reported by
the supervisor (see ``sshrun.report``), and sshrun exits with that code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# The head's stdout was closed (``sshrun ... | head``): 128 + SIGPIPE, what a
# shell reports for a classic tool killed by SIGPIPE.
EXIT_PIPE = 141
EXIT_SSH = 255


def shown(name: str) -> str:
    """A file name (or any text from the user) as one printable line: quoted when it is not."""
    return name if name.isprintable() else repr(name)


class SshrunError(Exception):
    """Base of every error sshrun reports; ``exit_code`` is sshrun's status."""

    exit_code = EXIT_FAILURE
    # What resolving the settings had to tell the user before it failed
    # (each shown as ``sshrun: TEXT``): the CLI prints them before the error.
    notices: tuple[str, ...] = ()


class ConfigError(SshrunError):
    """Usage or configuration error: bad flag, bad hostfile, bad value."""

    exit_code = EXIT_USAGE


class LocationError(ConfigError):
    """A configuration error at a place in a file (or in a flag's value)."""

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{shown(source)}:{line}:{column}: {message}")


class NodeSetupError(ConfigError):
    """A node is reachable but not set up as configured (no interpreter, no torch)."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")


class SSHError(SshrunError):
    """A node could not be reached or logged into over SSH."""

    exit_code = EXIT_SSH

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")


class ConnectError(SSHError):
    """TCP connection refused, host unreachable, or connect/login timed out."""


class AuthError(SSHError):
    """The node accepted none of our keys."""


class HostKeyError(SSHError):
    """The node's host key is unknown or differs from known_hosts."""


class AgentError(SSHError):
    """The node agent could not start or broke the head/agent protocol."""
