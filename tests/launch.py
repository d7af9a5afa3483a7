"""For tests that launch several processes (accelerate launch, torchrun): a free port for their rendezvous."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port no process listens on now (the OS picks it; the launch takes it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
