"""iptables-restore's line limits, and the checks that keep every payload inside them.

iptables-restore cuts a line longer than 10,239 bytes (its newline included)
and runs the tail as a command of its own; it refuses more than 251
arguments on a rule line and an argument longer than 1,023 bytes. These tests
pin each boundary, byte for byte, without any process; the same boundaries are
checked against real iptables in tests/integration/test_restore_limits.py.
"""

from __future__ import annotations

import math

import pytest

from aioiptables import FakeClient, InvalidRuleError, Protocol
from aioiptables.limits import (
    GROWTH_ARGS_FIXED,
    GROWTH_ARGS_PER_EXTENSION,
    GROWTH_BYTES_FIXED,
    GROWTH_BYTES_PER_EXTENSION,
    MAX_PARAM_BYTES,
    MAX_RESTORE_LINE_ARGS,
    MAX_RESTORE_LINE_BYTES,
    MAX_RULE_POSITION,
    check_restore_payload,
    check_restore_rule,
    restore_line_args,
)
from aioiptables.syntax import join_tokens

pytestmark = pytest.mark.anyio


# -- building lines of an exact size -------------------------------------------------------------


def comments(size: int, *, longest: int = 250) -> tuple[str, ...]:
    """``-m comment --comment c...`` groups whose joined form (each with its
    leading blank) is exactly ``size`` bytes, each comment at most ``longest``."""
    group = len(" -m comment --comment ")
    count = math.ceil(size / (group + longest))
    letters = size - group * count
    assert count >= 0 and letters >= count, f"cannot pad {size} bytes"
    spec: list[str] = []
    for i in range(count):
        spec += ["-m", "comment", "--comment", "c" * (letters // count + (i < letters % count))]
    assert len((" " + join_tokens(spec)).encode()) == size if spec else size == 0
    return tuple(spec)


def rule_line(size: int, chain: str = "INPUT") -> str:
    """A valid rule line (``-A CHAIN <comments> -j ACCEPT``) of exactly
    ``size`` bytes with its newline."""
    head, tail = f"-A {chain}", " -j ACCEPT"
    line = head + " " + join_tokens(comments(size - 1 - len(head) - len(tail))) + tail
    assert len(line.encode()) + 1 == size
    return line


def payload(*lines: str) -> str:
    return "*filter\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"


def refusal(text: str) -> InvalidRuleError:
    with pytest.raises(InvalidRuleError) as caught:
        check_restore_payload(text)
    return caught.value


# -- the limits, as found in iptables' source ---------------------------------------------------


def test_the_limits_are_those_of_iptables_restore_1_8_7_to_1_8_13() -> None:
    # fgets into char buffer[10240]; MAX_ARGC 255 less argv[0], -t, table and
    # the terminating slot; struct xt_param_buf's char buffer[1024].
    assert (MAX_RESTORE_LINE_BYTES, MAX_RESTORE_LINE_ARGS, MAX_PARAM_BYTES) == (10239, 251, 1023)


# -- line length ------------------------------------------------------------------------------------

LENGTHS = [
    pytest.param(10238, True, id="10,238 bytes with its newline: read whole"),
    pytest.param(10239, True, id="10,239 bytes: the longest line fgets reads whole"),
    pytest.param(10240, False, id="10,240 bytes: its newline spills into a second read"),
    pytest.param(10241, False, id="10,241 bytes: its last byte would run as a command"),
]


@pytest.mark.parametrize(("size", "accepted"), LENGTHS)
@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(rule_line, id="a rule of long comments"),
        pytest.param(lambda size: "#" + "x" * (size - 2), id="one comment line (never split, still cut)"),
        pytest.param(lambda size: "-A INPUT -j ACCEPT" + " " * (size - 19), id="blanks (one short rule)"),
    ],
)
def test_a_line_is_refused_from_10240_bytes_with_its_newline(
    shape: object, size: int, accepted: bool
) -> None:
    line = shape(size)  # type: ignore[operator]
    assert len(line.encode()) + 1 == size
    if accepted:
        check_restore_payload(payload(line))
        return
    error = refusal(payload(line))
    assert error.what == "restore line 2"
    assert str(error.value) == line[:60] + "..."
    assert f"is {size:,} bytes long with its newline" in str(error)
    assert "iptables-restore reads at most 10,239" in str(error)


@pytest.mark.parametrize(
    ("wide", "size", "accepted"),
    [
        pytest.param(5118, 10239, True, id="#x and 5,118 two-byte characters: 10,239 bytes"),
        pytest.param(5119, 10241, False, id="#x and 5,119 two-byte characters: 10,241 bytes"),
    ],
)
def test_length_is_counted_in_utf8_bytes(wide: int, size: int, accepted: bool) -> None:
    line = "#x" + "é" * wide
    assert len(line.encode()) + 1 == size
    if accepted:
        check_restore_payload(line)
    else:
        assert refusal(line).what == "restore line 1"


def test_the_last_line_counts_as_if_it_had_its_newline() -> None:
    line = rule_line(10240)
    with pytest.raises(InvalidRuleError, match="10,240 bytes"):
        check_restore_payload("*filter\n" + line)


def test_the_first_offending_line_is_named() -> None:
    good, bad = rule_line(10239), rule_line(10241)
    error = refusal(payload(good, good, bad, bad))
    assert error.what == "restore line 4"


# -- arguments per line ---------------------------------------------------------------------------

ARGS = [
    pytest.param(["-A", "X", *["-j"] * 249], True, id="251 arguments"),
    pytest.param(["-A", "X", *["-j"] * 250], False, id="252 arguments"),
    pytest.param(["-A", "X", *["a b"] * 249], True, id="251 arguments, quoted with blanks inside"),
    pytest.param(["-A", "X", *[""] * 249], True, id="251 arguments, empty ones quoted as two quotes"),
    pytest.param(["-A", "X", *[""] * 250], False, id="252 arguments, empty ones quoted as two quotes"),
]


@pytest.mark.parametrize(("tokens", "accepted"), ARGS)
def test_at_most_251_arguments_fit_a_rule_line(tokens: list[str], accepted: bool) -> None:
    line = join_tokens(tokens)
    assert [a.decode() for a in restore_line_args(line.encode())] == tokens
    if accepted:
        check_restore_payload(payload(line))
    else:
        error = refusal(payload(line))
        assert "holds 252 arguments" in str(error) and "Parser cannot handle more arguments" in str(error)


@pytest.mark.parametrize(
    ("line", "count"),
    [
        pytest.param('-A X "a"b', 4, id="a closing quote ends an argument"),
        pytest.param('-A X a"b c"', 3, id="an opening quote inside a word joins it"),
        pytest.param("-A X \t -j\tACCEPT   ", 4, id="tabs and runs of blanks separate"),
        pytest.param('-A X "a\\"b\\\\"', 3, id="escapes inside quotes are one byte"),
        pytest.param("-A X a\\ b", 4, id="a backslash outside quotes is a plain byte"),
    ],
)
def test_arguments_are_split_as_iptables_restore_splits_them(line: str, count: int) -> None:
    assert len(restore_line_args(line.encode())) == count
    too_many = " ".join([line] * (MAX_RESTORE_LINE_ARGS // count + 1))
    assert len(restore_line_args(too_many.encode())) > MAX_RESTORE_LINE_ARGS
    with pytest.raises(InvalidRuleError, match="arguments"):
        check_restore_payload(payload(too_many))


@pytest.mark.parametrize(
    "tokens",
    [
        pytest.param(["-A", "X", "-m", "comment", "--comment", 'say "hi"'], id="quotes"),
        pytest.param(["-A", "X", "--comment", "a\\b", "#c", "'"], id="backslash, hash, apostrophe"),
        pytest.param(["-A", "X", "--comment", "", "x"], id="an empty token"),
        pytest.param(["-A", "X", "--comment", "é\u2028\u00a0ü"], id="characters outside ASCII"),
    ],
)
def test_what_join_tokens_writes_iptables_reads_back_token_for_token(tokens: list[str]) -> None:
    assert restore_line_args(join_tokens(tokens).encode()) == [t.encode() for t in tokens]


# -- length of one argument ---------------------------------------------------------------------

PARAMS = [
    pytest.param("c" * 1023, True, id="1,023 bytes"),
    pytest.param("c" * 1024, False, id="1,024 bytes"),
    pytest.param("c " * 511 + "c", True, id="1,023 bytes quoted, blanks inside"),
    pytest.param('"' * 1023, True, id="1,023 quotes, each escaped: 2,046 bytes on the line"),
    pytest.param('"' * 1024, False, id="1,024 quotes, each escaped"),
    pytest.param("é" * 511 + "c", True, id="511 two-byte characters and one more byte"),
    pytest.param("é" * 512, False, id="512 two-byte characters"),
]


@pytest.mark.parametrize(("token", "accepted"), PARAMS)
def test_an_argument_may_hold_1023_bytes(token: str, accepted: bool) -> None:
    line = join_tokens(["-A", "INPUT", "-m", "comment", "--comment", token, "-j", "ACCEPT"])
    if accepted:
        check_restore_payload(payload(line))
    else:
        error = refusal(payload(line))
        assert error.what == "restore line 2"
        assert "argument of 1,024 bytes" in str(error) and "Parameter too long" in str(error)


def test_comment_lines_are_measured_but_never_split() -> None:
    check_restore_payload("# " + "x" * 2000 + "\n#" + " x" * 400 + "\n")


# -- what else cannot pass ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what", "why"),
    [
        pytest.param("*filter\n-A X -j ACC\0EPT\nCOMMIT\n", "restore line 2", "NUL", id="a NUL"),
        pytest.param("*filter\n-A X -j \udcff\nCOMMIT\n", "restore line 2", "UTF-8", id="a lone surrogate"),
    ],
)
def test_text_iptables_restore_cannot_read_as_written_is_refused(text: str, what: str, why: str) -> None:
    error = refusal(text)
    assert error.what == what and why in str(error)


# -- through the client: nothing reaches a process ----------------------------------------------

# The injection the check exists for: the planner's line for a rule of 37
# comments of 250 bytes, then one whose end falls past byte 10,239. The tail
# would run as "-A INPUT -s 6.6.6.6/32 -j ACCEPT -m comment --comment <newline>".
INJECTED = " -A INPUT -s 6.6.6.6/32 -j ACCEPT -m comment --comment "


def injection_line(ending: str) -> str:
    """``-A INPUT`` with 37 comments of 250 bytes and a last comment whose
    ``ending`` (and closing quote) lands just past byte 10,239."""
    spec = ["-m", "comment", "--comment", "c" * 250] * 37
    for size in range(256):
        line = join_tokens(["-A", "INPUT", *spec, "-m", "comment", "--comment", "c" * size + ending])
        if line.encode()[MAX_RESTORE_LINE_BYTES:] == ending.encode() + b'"':
            return line
    raise AssertionError("no comment size puts the ending past the cut")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(injection_line(INJECTED), id="an ACCEPT rule injected"),
        pytest.param(injection_line(" -F -m comment --comment "), id="a flush injected"),
        pytest.param(injection_line(" -F"), id="a bare -F past the cut"),
        pytest.param(rule_line(10240), id="a line one byte too long"),
        pytest.param(join_tokens(["-A", "INPUT", *["-j"] * 250]), id="252 arguments"),
    ],
)
async def test_client_restore_refuses_before_any_process(line: str) -> None:
    client = FakeClient(Protocol.IPV4)
    before = await client.save("filter")
    calls = client.calls
    with pytest.raises(InvalidRuleError):
        await client.restore(payload(line))
    assert client.calls == calls, "no process ran"
    assert await client.save("filter") == before


async def test_client_restore_applies_the_longest_line() -> None:
    client = FakeClient(Protocol.IPV4)
    await client.restore(payload(rule_line(10239)))
    assert len(client.fake.rules(Protocol.IPV4, "filter", "INPUT")) == 1


# -- a rule, checked up front ------------------------------------------------------------------


def margin(spec: tuple[str, ...]) -> tuple[int, int]:
    """(bytes, arguments) kept free for the rule's printed form."""
    grows = sum(
        1
        for option, name in zip(spec, (*spec[1:], ""), strict=True)
        if option in ("-p", "-m", "-j", "-g") and name not in ("comment", "ACCEPT", "DROP", "RETURN")
    )
    return (
        GROWTH_BYTES_FIXED + GROWTH_BYTES_PER_EXTENSION * grows,
        GROWTH_ARGS_FIXED + GROWTH_ARGS_PER_EXTENSION * grows,
    )


def padded_to_bytes(spec: tuple[str, ...], size: int, chain: str = "INPUT") -> tuple[str, ...]:
    """``spec`` and comments, whose ``-I CHAIN MAX_RULE_POSITION`` line is
    ``size`` bytes with its newline."""
    head = f"-I {chain} {MAX_RULE_POSITION}" + (f" {join_tokens(spec)}" if spec else "")
    padded = spec + comments(size - 1 - len(head.encode()))
    assert len(f"-I {chain} {MAX_RULE_POSITION} {join_tokens(padded)}".encode()) + 1 == size
    return padded


def padded_to_args(spec: tuple[str, ...], count: int) -> tuple[str, ...]:
    """``spec``, short comments and single ``x`` tokens, whose ``-I`` line
    holds ``count`` arguments (not a rule iptables would take: only counted)."""
    free = count - 3 - len(spec)
    return spec + ("-m", "comment", "--comment", "x") * (free // 4) + ("x",) * (free % 4)


LIMIT_BYTES = MAX_RESTORE_LINE_BYTES - GROWTH_BYTES_FIXED  # a rule with no extension that may grow
X = ("-m", "comment", "--comment", "x")
SYN_REJECT = ("-p", "tcp", "--syn", "-j", "REJECT")  # two extensions that may grow


@pytest.mark.parametrize(
    ("spec", "accepted"),
    [
        pytest.param(padded_to_bytes((), LIMIT_BYTES), True, id="comments only: 10,239 less 64 bytes"),
        pytest.param(padded_to_bytes((), LIMIT_BYTES + 1), False, id="comments only: one byte more"),
        pytest.param(
            padded_to_bytes(("-m", "recent", "--set"), LIMIT_BYTES - 96),
            True,
            id="one extension: 96 bytes less",
        ),
        pytest.param(
            padded_to_bytes(("-m", "recent", "--set"), LIMIT_BYTES - 95),
            False,
            id="one extension: one byte more",
        ),
        pytest.param(X * 61, True, id="comments only: 247 arguments (251 less 4)"),
        pytest.param((*X * 61, "-f"), False, id="comments only: 248 arguments"),
        pytest.param(
            (*SYN_REJECT, "!", "-i", "lo", *X * 56), True, id="two extensions: 235 arguments (less 12)"
        ),
        pytest.param(
            (*SYN_REJECT, "!", "-i", "lo", *X * 56, "-f"), False, id="two extensions: 236 arguments"
        ),
        pytest.param(("-m", "comment", "--comment", "c" * 1023), True, id="an argument of 1,023 bytes"),
        pytest.param(("-m", "comment", "--comment", "c" * 1024), False, id="an argument of 1,024 bytes"),
    ],
)
def test_a_rule_must_fit_with_room_for_its_printed_form(spec: tuple[str, ...], accepted: bool) -> None:
    if accepted:
        check_restore_rule("INPUT", spec)
    else:
        with pytest.raises(InvalidRuleError) as caught:
            check_restore_rule("INPUT", spec)
        assert caught.value.what == "rule"
        assert str(caught.value.value).startswith(f"-I INPUT {MAX_RULE_POSITION} ")


# How iptables 1.8.9 printed rules back (nft and legacy alike), measured: the
# largest growths per extension found.
PRINTED = [
    pytest.param(
        ("-s", "::1", "-d", "::2", "-j", "ACCEPT"),
        ("-s", "::1/128", "-d", "::2/128", "-j", "ACCEPT"),
        id="addresses only (IPv6): no extension that may grow",
    ),
    pytest.param(
        ("-m", "recent", "--set"),
        (
            "-m",
            "recent",
            "--set",
            "--name",
            "DEFAULT",
            "--mask",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "--rsource",
        ),
        id="recent (IPv6)",
    ),
    pytest.param(
        ("-m", "time", "--timestart", "10:00"),
        (
            "-m",
            "time",
            "--timestart",
            "10:00:00",
            "--timestop",
            "23:59:59",
            "--datestop",
            "2038-01-19T03:14:07",
        ),
        id="time",
    ),
    pytest.param(
        ("-j", "CONNMARK", "--save-mark"),
        ("-j", "CONNMARK", "--save-mark", "--nfmask", "0xffffffff", "--ctmask", "0xffffffff"),
        id="CONNMARK",
    ),
    pytest.param(
        ("-p", "tcp", "-j", "TPROXY", "--on-port", "1"),
        ("-p", "tcp", "-j", "TPROXY", "--on-port", "1", "--on-ip", "0.0.0.0", "--tproxy-mark", "0x0/0x0"),
        id="TPROXY",
    ),
    pytest.param(
        ("-p", "tcp", "--syn", "-j", "REJECT"),
        (
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--tcp-flags",
            "FIN,SYN,RST,ACK",
            "SYN",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp6-port-unreachable",
        ),
        id="tcp --syn and REJECT (IPv6)",
    ),
    pytest.param(
        ("-s", "::1", "-m", "connlimit", "--connlimit-above", "10", "-j", "MARK", "--set-mark", "5"),
        (
            "-s",
            "::1/128",
            "-m",
            "connlimit",
            "--connlimit-above",
            "10",
            "--connlimit-mask",
            "128",
            "--connlimit-saddr",
            "-j",
            "MARK",
            "--set-xmark",
            "0x5/0xffffffff",
        ),
        id="address, connlimit and MARK (IPv6)",
    ),
]


@pytest.mark.parametrize(("given", "printed"), PRINTED)
@pytest.mark.parametrize("bound", ["bytes", "arguments"])
def test_a_rule_accepted_up_front_can_be_deleted_by_its_printed_form(
    given: tuple[str, ...], printed: tuple[str, ...], bound: str
) -> None:
    size, count = margin(given)
    if bound == "bytes":
        spec = padded_to_bytes(given, MAX_RESTORE_LINE_BYTES - size)
    else:
        spec = padded_to_args(given, MAX_RESTORE_LINE_ARGS - count)
    check_restore_rule("INPUT", spec)  # the largest rule accepted...
    padding = spec[len(given) :]
    delete = f"-D INPUT {join_tokens(printed + padding)}"
    check_restore_payload(payload(delete))  # ...can be deleted as iptables prints it
