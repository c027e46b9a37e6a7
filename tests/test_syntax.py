"""iptables' quoting rules: quote, split_line and join_tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioiptables.errors import InvalidRuleError
from aioiptables.syntax import join_tokens, quote, split_line

# (comment as given to iptables, the `--comment` argument as `iptables -S` prints it)
# taken from a real iptables 1.8.9.
IPTABLES_PRINTS = [
    pytest.param("back\\slash", '"back\\\\slash"', id="backslash-is-escaped"),
    pytest.param("it's", '"it\\\'s"', id="single-quote-is-escaped"),
    pytest.param("a", "a", id="plain-word-is-bare"),
    pytest.param('sp ace\\x"q', '"sp ace\\\\x\\"q"', id="space-backslash-and-double-quote"),
]


@pytest.mark.parametrize(("token", "printed"), IPTABLES_PRINTS)
def test_quote_as_iptables_prints_matches_real_iptables(token: str, printed: str) -> None:
    assert quote(token, as_iptables_prints=True) == printed


@pytest.mark.parametrize(("token", "printed"), IPTABLES_PRINTS)
def test_split_line_reads_what_real_iptables_prints(token: str, printed: str) -> None:
    line = f"-A INPUT -m comment --comment {printed} -j ACCEPT"
    assert split_line(line) == ["-A", "INPUT", "-m", "comment", "--comment", token, "-j", "ACCEPT"]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("abcXYZ", "abcXYZ", id="letters-bare"),
        pytest.param("0123456789", "0123456789", id="digits-bare"),
        pytest.param("KILO_NAT-1", "KILO_NAT-1", id="underscore-and-dash-bare"),
        pytest.param("10.0.0.0/8", '"10.0.0.0/8"', id="dot-and-slash-quoted"),
        pytest.param("a:b", '"a:b"', id="colon-quoted"),
        pytest.param("", '""', id="empty-token-quoted"),
        pytest.param("a b", '"a b"', id="space-quoted"),
        pytest.param("é", '"é"', id="non-ascii-letter-quoted"),
        pytest.param('"', '"\\""', id="double-quote-escaped"),
        pytest.param("'", '"\\\'"', id="single-quote-escaped"),
        pytest.param("\\", '"\\\\"', id="backslash-escaped"),
        pytest.param("#x", '"#x"', id="hash-quoted-not-escaped"),
    ],
)
def test_quote_as_iptables_prints_quotes_anything_outside_word_characters(token: str, expected: str) -> None:
    assert quote(token, as_iptables_prints=True) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("ACCEPT", "ACCEPT", id="word-bare"),
        pytest.param("10.0.0.0/8", "10.0.0.0/8", id="address-bare"),
        pytest.param("--dport", "--dport", id="option-bare"),
        pytest.param("1:1024", "1:1024", id="port-range-bare"),
        pytest.param("é", "é", id="non-ascii-bare"),
        pytest.param("", '""', id="empty-token-quoted-so-it-is-not-lost"),
        pytest.param("a b", '"a b"', id="space-quoted"),
        pytest.param("a\tb", '"a\tb"', id="tab-quoted"),
        pytest.param("a\u00a0b", '"a\u00a0b"', id="unicode-space-quoted"),
        pytest.param("#comment", '"#comment"', id="hash-quoted-so-it-is-not-a-comment-line"),
        pytest.param('say "hi"', '"say \\"hi\\""', id="double-quotes-escaped"),
        pytest.param("it's", '"it\\\'s"', id="single-quote-escaped"),
        pytest.param("C:\\dir", '"C:\\\\dir"', id="backslash-escaped"),
    ],
)
def test_quote_by_default_quotes_only_what_would_break_the_line(token: str, expected: str) -> None:
    assert quote(token) == expected


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        pytest.param("", [], id="empty-line-no-tokens"),
        pytest.param("   \t ", [], id="blank-line-no-tokens"),
        pytest.param("-A INPUT -j ACCEPT", ["-A", "INPUT", "-j", "ACCEPT"], id="plain-tokens"),
        pytest.param("  -A   INPUT\t-j  ACCEPT  ", ["-A", "INPUT", "-j", "ACCEPT"], id="runs-of-blanks"),
        pytest.param("-A INPUT -j ACCEPT\n", ["-A", "INPUT", "-j", "ACCEPT"], id="trailing-newline"),
        pytest.param("-A INPUT -j ACCEPT\r\n", ["-A", "INPUT", "-j", "ACCEPT"], id="trailing-crlf"),
        pytest.param('--comment "a b"', ["--comment", "a b"], id="quoted-space-kept"),
        pytest.param('--comment ""', ["--comment", ""], id="empty-quoted-token-kept"),
        pytest.param('--comment "  "', ["--comment", "  "], id="quoted-blanks-kept"),
        pytest.param('"a \\"b\\""', ['a "b"'], id="escaped-double-quote"),
        pytest.param('"\\\\"', ["\\"], id="escaped-backslash"),
        pytest.param('"\\x"', ["x"], id="backslash-makes-any-next-char-literal"),
        pytest.param("a\\b", ["a\\b"], id="backslash-outside-quotes-is-literal"),
        pytest.param("it's", ["it's"], id="single-quote-outside-quotes-is-literal"),
        pytest.param('"#x"', ["#x"], id="quoted-hash"),
    ],
)
def test_split_line(line: str, tokens: list[str]) -> None:
    assert split_line(line) == tokens


@pytest.mark.parametrize(
    "line",
    [
        pytest.param('--comment "open', id="unterminated-quote"),
        pytest.param('--comment "ends in escape\\"', id="escaped-closing-quote"),
        pytest.param('--comment "trailing backslash\\', id="trailing-backslash-inside-quotes"),
    ],
)
def test_split_line_refuses_an_unterminated_quote(line: str) -> None:
    with pytest.raises(InvalidRuleError, match="unterminated quote") as caught:
        split_line(line)
    assert caught.value.value == line
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("tokens", "line"),
    [
        pytest.param([], "", id="no-tokens-empty-line"),
        pytest.param(["-j", "ACCEPT"], "-j ACCEPT", id="plain-tokens-joined-by-one-space"),
        pytest.param(
            ["-m", "comment", "--comment", "a b", "-j", "ACCEPT"],
            '-m comment --comment "a b" -j ACCEPT',
            id="token-with-space-quoted",
        ),
        pytest.param(["-s", "10.0.0.0/8"], "-s 10.0.0.0/8", id="address-not-quoted"),
        pytest.param(["--comment", ""], '--comment ""', id="empty-token-quoted"),
    ],
)
def test_join_tokens(tokens: list[str], line: str) -> None:
    assert join_tokens(tokens) == line
    assert join_tokens(tuple(tokens)) == line


# Any text without control characters (Cc) and without lone surrogates (Cs).
_TOKEN = st.text(st.characters(blacklist_categories=("Cc", "Cs")))


@given(st.lists(_TOKEN))
def test_split_line_reads_back_join_tokens(tokens: list[str]) -> None:
    assert split_line(join_tokens(tokens)) == tokens


@given(_TOKEN)
def test_split_line_reads_back_quote_as_iptables_prints(token: str) -> None:
    assert split_line(quote(token, as_iptables_prints=True)) == [token]


@given(st.text(alphabet=st.sampled_from(list("ab \"\\\t\r\n'#")), max_size=40))
def test_the_fast_tokenizer_agrees_with_the_careful_one(line: str) -> None:
    from aioiptables.syntax import _split_slowly

    try:
        expected: list[str] | None = _split_slowly(line)
    except InvalidRuleError:
        expected = None
    try:
        got: list[str] | None = split_line(line)
    except InvalidRuleError:
        got = None
    assert got == expected


def test_an_unterminated_quote_after_long_tokens_is_refused() -> None:
    # A regular expression with nested repetition would backtrack for ages here.
    with pytest.raises(InvalidRuleError):
        split_line("a" * 5000 + ' "' + "b" * 5000)
