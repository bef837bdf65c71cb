from datetime import date

from dates import add_months, business_days, days_between


def test_days_between_can_be_negative():
    assert days_between(date(2024, 3, 10), date(2024, 3, 1)) == -9


def test_business_days_skips_weekend():
    assert business_days(date(2024, 3, 4), date(2024, 3, 11)) == 5


def test_add_months_clamps_to_month_end():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 15), 3) == date(2025, 2, 15)
