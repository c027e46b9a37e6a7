"""Which iptables release a test runs, and ranges of releases to key what
each does where releases differ.

The tests that hold the library to real iptables run whatever iptables is
first in ``PATH``: the host's, or another userspace through
``scripts/compat/run-tests WRAPDIR``. Where releases differ, a test states
what each range of releases does (:class:`Releases`) and asks the iptables
under test which release it is (:func:`release_of`).

What is stated was measured on 1.8.7, 1.8.9, 1.8.11 and 1.8.13, both
backends. A bound between two of those (1.8.8, 1.8.10, 1.8.12) is the
release that iptables' history names for the change; each use says which
commit that is.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass

from aioiptables import IPTablesVersion

#: ``(major, minor, patch)``.
Release = tuple[int, int, int]

_NEVER: Release = (0, 0, 0)
_EVER: Release = (99, 99, 99)


@dataclass(frozen=True)
class Releases:
    """The releases from ``first`` to ``last``, both included, of one
    backend (``"nft"`` or ``"legacy"``) or, when ``backend`` is None, of both."""

    first: Release = _NEVER
    last: Release = _EVER
    backend: str | None = None

    def holds(self, release: Release, backend: str) -> bool:
        return self.first <= release <= self.last and self.backend in (None, backend)

    def __str__(self) -> str:
        first, last = ".".join(map(str, self.first)), ".".join(map(str, self.last))
        span = (
            f"{first} on"
            if self.last == _EVER
            else f"up to {last}"
            if self.first == _NEVER
            else first
            if self.first == self.last
            else f"{first} to {last}"
        )
        return f"iptables {span}" + (f" ({self.backend})" if self.backend else "")


def since(major: int, minor: int, patch: int, backend: str | None = None) -> Releases:
    """This release and every later one."""
    return Releases((major, minor, patch), _EVER, backend)


def until(major: int, minor: int, patch: int, backend: str | None = None) -> Releases:
    """This release and every earlier one."""
    return Releases(_NEVER, (major, minor, patch), backend)


def between(first: Release, last: Release, backend: str | None = None) -> Releases:
    """From ``first`` to ``last``, both included."""
    return Releases(first, last, backend)


@functools.lru_cache(maxsize=64)
def release_of(program: str, netns: str) -> Release:
    """The release of ``program`` (``iptables-nft``...), from its
    ``--version``, run inside the network namespace ``netns`` (once per
    program and namespace)."""
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", program, "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return IPTablesVersion.parse(done.stdout or done.stderr).release
