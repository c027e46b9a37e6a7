"""``python -m aioiptables demo`` end to end, on real iptables.

Each test runs the demo as a separate process, as a user would, and checks its
exit status, what it printed, and that the network namespace it created is
gone afterwards. Missing root, ``ip`` or iptables binaries fail the test:
a demo that cannot run is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aioiptables.demo import DEMO_NETNS_PREFIX

pytestmark = pytest.mark.iptables

BACKENDS = ["nft", "legacy"]
STEP_NAMES = ["set", "steady", "repair-deleted-rule", "repair-flushed-chain", "cleanup"]
NETNS_NAME = re.compile(re.escape(DEMO_NETNS_PREFIX) + r"[0-9a-f]+")
# The demo takes well under a second; this only stops a hung run.
TIMEOUT = 120


def require(backend: str) -> None:
    """Fail (never skip) when the demo cannot run here."""
    if os.geteuid() != 0:
        pytest.fail("the demo needs root (it creates a network namespace)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for program in ("ip", "nsenter", f"iptables-{backend}", f"ip6tables-{backend}-restore"):
        if shutil.which(program, path=path) is None:
            pytest.fail(f"{program} is missing: apt-get install -y iproute2 util-linux iptables")


def demo_namespaces() -> set[str]:
    """The names in ``ip netns list`` that look like the demo's."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    return {name for name in names if name.startswith(DEMO_NETNS_PREFIX)}


def run_demo(backend: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the demo in a new process; check it exits 0 and leaves no namespace."""
    require(backend)
    before = demo_namespaces()
    done = subprocess.run(
        [sys.executable, "-m", "aioiptables", "demo", "--backend", backend, *options],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"demo exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    named = NETNS_NAME.search(done.stdout)
    assert named, f"the demo did not name its namespace:\n{done.stdout}"
    left = demo_namespaces()
    assert named.group() not in left, f"the demo left its namespace {named.group()} behind"
    # Assumes demos do not run concurrently (no pytest-xdist): another run's
    # namespace, still in use, would show up here too.
    assert left <= before, f"demo namespaces left behind: {sorted(left - before)}"
    return done


def row(stdout: str, number: int) -> list[str]:
    """The columns of one step's row in the text table: processes, writes, changes, ms."""
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == str(number) and len(fields) >= 5:
            return fields[-4:]
    raise AssertionError(f"no row for step {number} in:\n{stdout}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_text(backend: str) -> None:
    done = run_demo(backend)
    out = done.stdout
    # The version line says which backend ran: "iptables v1.8.9 (nf_tables)" or "(legacy)".
    assert ("(nf_tables)" if backend == "nft" else "(legacy)") in out.splitlines()[0], out
    assert re.search(r"^ok: 5 steps", out, re.MULTILINE), out
    assert row(out, 2)[1:3] == ["0", "0"], "the steady-state reconcile wrote something"
    assert row(out, 3)[1:3] == ["1", "1"], "the deleted rule should cost one write of one change"
    assert row(out, 4)[1:3] == ["1", "2"], "the flushed chain should cost one write of two changes"
    assert "fd00:4::/64" not in out, "IPv6 rules without -6"
    assert done.stderr == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_ipv6(backend: str) -> None:
    done = run_demo(backend, "-6")
    out = done.stdout
    assert "IPv4 and IPv6" in out
    assert "-A KILO-FORWARD -s fd00:4::/64 -j ACCEPT" in out
    assert f"ip6tables-{backend}-save -t nat:" in out
    assert row(out, 2)[1] == "0"
    # The tampering is IPv4 only, so each repair is still one write.
    assert row(out, 3)[1] == "1" and row(out, 4)[1] == "1"


def check_json(document: dict[str, Any], backend: str, ipv6: bool) -> None:
    assert document["ok"] is True and document["error"] is None
    assert document["netns_deleted"] is True
    assert document["backend"] == backend and document["ipv6"] is ipv6
    steps = {step["name"]: step for step in document["steps"]}
    assert [step["name"] for step in document["steps"]] == STEP_NAMES
    assert [step["step"] for step in document["steps"]] == [1, 2, 3, 4, 5]
    assert steps["steady"]["writes"] == 0 and steps["steady"]["changes"] == 0
    assert steps["repair-deleted-rule"]["writes"] == 1
    assert steps["repair-flushed-chain"]["writes"] == 1
    protos = 2 if ipv6 else 1
    assert steps["set"]["writes"] == 2 * protos  # nat and filter, per protocol
    assert steps["cleanup"]["writes"] == 2 * protos
    for step in document["steps"]:
        # The processes shown are the controller's own, as its last_stats count them.
        assert step["processes"] == step["stats"]["processes"]
        assert step["ms"] > 0
    # One iptables-save per table read (nat and filter), one restore per table written.
    reads = 2 * protos
    assert steps["set"]["processes"] == reads + steps["set"]["writes"]
    assert steps["steady"]["processes"] == reads
    assert steps["repair-deleted-rule"]["processes"] == reads + 1
    assert steps["repair-flushed-chain"]["processes"] == reads + 1
    assert steps["cleanup"]["processes"] == reads + steps["cleanup"]["writes"]
    assert document["total_processes"] == sum(step["processes"] for step in document["steps"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_json(backend: str) -> None:
    done = run_demo(backend, "--json")
    check_json(json.loads(done.stdout), backend, ipv6=False)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
def test_demo_json_ipv6_on_each_event_loop(anyio_backend: str) -> None:
    done = run_demo("nft", "--json", "-6", "--anyio-backend", anyio_backend)
    document = json.loads(done.stdout)
    check_json(document, "nft", ipv6=True)
    assert document["anyio_backend"] == anyio_backend


# A stand-in for iptables-nft-save that says it has started, then hangs: the
# demo's first read of the tables waits on it, so a signal sent then is sure
# to find the demo inside its event loop, in the middle of a step.
HANGING_SAVE = """\
#!/bin/sh
touch "$AIOIPTABLES_TEST_MARK"
exec sleep 60
"""


@pytest.mark.parametrize(
    ("anyio_backend", "signum", "status"),
    [
        ("asyncio", signal.SIGINT, 130),
        ("trio", signal.SIGINT, 130),
        ("asyncio", signal.SIGTERM, 143),
    ],
)
def test_an_interrupted_demo_says_so_in_one_line_and_deletes_its_namespace(
    tmp_path: Path, anyio_backend: str, signum: signal.Signals, status: int
) -> None:
    require("nft")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    save = bin_dir / "iptables-nft-save"
    save.write_text(HANGING_SAVE)
    save.chmod(0o755)
    mark = tmp_path / "save-started"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "AIOIPTABLES_TEST_MARK": str(mark),
    }
    before = demo_namespaces()
    argv = [sys.executable, "-m", "aioiptables", "demo", "--backend", "nft", "--anyio-backend", anyio_backend]
    # A session of its own, signalled as a whole: what Ctrl-C at a terminal does.
    demo = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not mark.exists():
            assert demo.poll() is None, f"the demo exited {demo.returncode}: {demo.communicate()}"
            assert time.monotonic() < deadline, "the demo never read its tables"
            time.sleep(0.05)
        os.killpg(demo.pid, signum)
        out, err = demo.communicate(timeout=TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == status, (out, err)
    assert err == "aioiptables demo: interrupted; its network namespace is deleted\n", err
    named = NETNS_NAME.search(out)
    assert named, out
    assert named.group() not in demo_namespaces()
    assert demo_namespaces() <= before
