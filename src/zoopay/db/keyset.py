"""Keyset pagination: order by a unique key and continue strictly after the last one seen."""

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, tuple_


def ordered_after(
    query: Select[Any],
    key: tuple[ColumnElement[Any], ...],
    after: tuple[datetime, str] | None,
    *,
    descending: bool,
) -> Select[Any]:
    query = query.order_by(*(column.desc() for column in key) if descending else key)
    if after is None:
        return query
    position, bound = tuple_(*key), tuple_(*after)
    return query.where(position < bound if descending else position > bound)
