"""Writing events: in the transaction of the change they describe, in the order of commits.

On PostgreSQL an event takes its id from a sequence when it is inserted, but transactions
commit in another order: a reader that saw id 12 could miss id 11, committed a moment later.
So every transaction that writes events first takes one transaction-scoped advisory lock, right
before inserting them (its last statement, as close to its commit as can be): ids are then
handed out in the order the transactions commit. SQLite commits one transaction at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from events.models import Event

# The advisory lock key that orders event ids; any 64-bit number the project uses for nothing
# else ("events" in ASCII).
ORDER_LOCK = 0x6576656E7473


@dataclass(frozen=True)
class NewEvent:
    type: Event.Type
    owner_id: int | None
    timesheet_id: int | None
    data: dict[str, Any]


def event_record(
    *, events: Sequence[NewEvent], actor_id: int | None, occurred_at: datetime
) -> None:
    """Write events in the current transaction, which must be the change's own."""
    if not events:
        return
    assert connection.in_atomic_block, "an event is written with the change it describes"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ORDER_LOCK])
    Event.objects.bulk_create(
        Event(
            type=event.type,
            occurred_at=occurred_at,
            actor_id=actor_id,
            owner_id=event.owner_id,
            timesheet_id=event.timesheet_id,
            data=event.data,
        )
        for event in events
    )
