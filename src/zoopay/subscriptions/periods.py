"""Monthly periods counted from a subscription's anchor date."""

import calendar
from datetime import datetime


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, its day clamped to the month's end (Jan 31 -> Feb 28)."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_start(anchor: datetime, now: datetime) -> datetime:
    """The start of the monthly period that `now` falls in (whatever zone `now` is written in:
    its months are counted in the anchor's)."""
    now = now.astimezone(anchor.tzinfo)
    months = (now.year - anchor.year) * 12 + now.month - anchor.month
    start = add_months(anchor, months)
    while start > now:
        months -= 1
        start = add_months(anchor, months)
    return start
