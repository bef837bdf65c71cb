from datetime import date

import pytest

from dates import parse_date


def test_iso_and_european_formats():
    assert parse_date("2024-03-01") == date(2024, 3, 1)
    assert parse_date(" 01.03.2024 ") == date(2024, 3, 1)


def test_garbage_is_rejected():
    with pytest.raises(ValueError, match="unrecognised"):
        parse_date("next tuesday")
