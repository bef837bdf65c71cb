from .parse import parse_date
from .ranges import add_months, business_days, days_between
