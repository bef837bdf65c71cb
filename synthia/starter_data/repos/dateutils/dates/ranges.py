"""Date arithmetic for billing periods."""

import calendar
from datetime import timedelta


def days_between(start, end):
    """Whole days from start to end (negative if end is earlier)."""
    return (end - start).days


def business_days(start, end):
    """Weekdays in [start, end): the end date itself is not counted."""
    count, day = 0, start
    while day < end:
        if day.weekday() < 5:
            count += 1
        day += timedelta(days=1)
    return count


def add_months(d, months):
    """Same day `months` later, clamped to the end of a shorter month."""
    month = d.month - 1 + months
    year = d.year + month // 12
    month = month % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)
