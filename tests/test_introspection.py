"""What help() and repr() say about the public objects.

README.md sends readers to ``controller.errors``, ``controller.state`` and the
like: ``help(Controller)`` (and the API reference, built from the same
docstring) must describe them. Reprs show up in logs and tracebacks: each says
what kind of object it is and what tells two apart, and costs no process.
"""

from __future__ import annotations

import pydoc
from collections.abc import Callable

import pytest

from aioiptables import Client, Controller, FakeClient, Protocol
from aioiptables.controller import _ERROR_BUFFER


def _help(obj: object) -> str:
    """What ``help(obj)`` prints, as one line: each line's `` | `` margin cut and
    whitespace folded (docstrings wrap anywhere)."""
    lines = pydoc.plain(pydoc.render_doc(obj)).splitlines()
    return " ".join(" ".join(line.strip().removeprefix("|") for line in lines).split())


@pytest.mark.parametrize(
    ("attribute", "description"),
    [
        ("errors", "the exceptions of the reconciles that failed in :meth:`run`"),
        ("state", "every chain the last reconcile read, keyed by ``(protocol, table, chain)``"),
        ("last_plans", "what the last reconcile wrote, one :class:`TablePlan` per table it changed"),
        ("last_stats", "what the last reconcile cost: ``processes`` run, ``writes``"),
        ("listeners", "called after every reconcile"),
        ("last_change", "the last foreign change to a table of the rule set"),
        ("following_events", "whether :meth:`run` is following events right now"),
        ("canary_trips", "how often a canary was found gone or emptied"),
    ],
)
def test_help_of_controller_describes_its_public_attributes(attribute: str, description: str) -> None:
    assert f"{attribute}: {description}" in _help(Controller)


def test_every_public_attribute_of_a_controller_is_described_by_help() -> None:
    # Attributes set in __init__ (not methods or properties, which have their own docs);
    # the constructor's arguments kept as attributes are described under Args.
    controller = Controller(FakeClient())
    text = _help(Controller)
    undescribed = [name for name in vars(controller) if not name.startswith("_") and f"{name}: " not in text]
    assert undescribed == []


def test_help_states_the_error_buffer_the_controller_has() -> None:
    assert f"Up to {_ERROR_BUFFER} wait while nobody reads" in _help(Controller)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Client(Protocol.IPV4, backend="nft"), "Client(Protocol.IPV4, backend='nft')"),
        (
            lambda: Client(Protocol.IPV6, backend="legacy", netns="blue"),
            "Client(Protocol.IPV6, backend='legacy', netns='blue')",
        ),
        (lambda: FakeClient(), "FakeClient(Protocol.IPV4, backend='nft', version=(1, 8, 9))"),
        (
            lambda: FakeClient(Protocol.IPV6, backend="legacy", version=(1, 8, 7)),
            "FakeClient(Protocol.IPV6, backend='legacy', version=(1, 8, 7))",
        ),
        (
            lambda: Controller(FakeClient()),
            "Controller(v4=FakeClient(Protocol.IPV4, backend='nft', version=(1, 8, 9)), resync=30.0)",
        ),
        (
            lambda: Controller(v6=FakeClient(Protocol.IPV6, version=(1, 8, 11)), resync=5, owner="kilo"),
            "Controller(v6=FakeClient(Protocol.IPV6, backend='nft', version=(1, 8, 11)), resync=5, owner='kilo')",
        ),
        (
            lambda: Controller(
                Client(Protocol.IPV4, backend="nft", netns="blue"),
                Client(Protocol.IPV6, backend="nft", netns="blue"),
                canary="KILO-CANARY",
            ),
            "Controller(v4=Client(Protocol.IPV4, backend='nft', netns='blue'), "
            "v6=Client(Protocol.IPV6, backend='nft', netns='blue'), resync=30.0, canary='KILO-CANARY')",
        ),
    ],
)
def test_repr(make: Callable[[], object], expected: str) -> None:
    assert repr(make()) == expected


def test_a_controller_s_repr_runs_no_process() -> None:
    fake = FakeClient()
    repr(Controller(fake, owner="kilo"))
    assert fake.calls == 0
