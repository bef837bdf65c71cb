import pytest

from cli.args import UsageError, parse


def test_flags_options_and_positionals():
    pos, vals = parse(["a.txt", "--count", "lines", "--total"], options=("count",), flags=("total",))
    assert (pos, vals) == (["a.txt"], {"total": True, "count": "lines"})


def test_unknown_option_is_an_error():
    with pytest.raises(UsageError, match="unknown option --verbose"):
        parse(["--verbose"])


def test_double_dash_ends_options():
    assert parse(["--", "--total"], flags=("total",)) == (["--total"], {"total": False})
