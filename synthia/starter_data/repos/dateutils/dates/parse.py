"""Parse the date formats our users type."""

from datetime import datetime

FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y")


def parse_date(text):
    """Return a date for text in any of FORMATS; raise ValueError otherwise."""
    # TODO: accept month names ("3 March 2024")
    text = text.strip()
    for fmt in FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"unrecognised date: {text!r}")
