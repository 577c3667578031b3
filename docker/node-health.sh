#!/bin/sh
# Health check of a node: its host key is in known_hosts and sshd sends its banner.
name=${SSHRUN_NODE_NAME:-$(hostname)}
grep -q "^$name " /sshrun/keys/known_hosts || exit 1
exec python3 -c '
import socket, sys
with socket.create_connection(("127.0.0.1", 22), timeout=3) as s:
    banner = s.recv(64)
    s.sendall(b"SSH-2.0-sshrun-healthcheck\r\n")
sys.exit(0 if banner.startswith(b"SSH-2.0-") else 1)
'
