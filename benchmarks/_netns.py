"""Benchmarks' shared helpers: a throwaway namespace and seeding rules in it.

Every benchmark runs inside namespaces it creates and deletes itself; none
touches the host's own tables.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def private_netns(prefix: str = "aioipt-bench") -> Iterator[str]:
    """Create a network namespace, yield its name, delete it afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def restore(netns: str, program: str, payload: str) -> None:
    """Load a payload with ``PROGRAM-restore --noflush`` inside the namespace."""
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", f"{program}-restore", "--noflush"],
        input=payload.encode(),
        check=True,
    )


class Stopwatch:
    """Wall time of a block, in seconds."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
