"""Timeline data functions: append with seq, read after a position, and the wire shape.

Data functions take a session and never commit; they return plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import Channel, Event, User


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a Z."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A timeline entry as streams and the REST API show it."""

    channel_id: int
    channel: str
    seq: int
    type: str
    data: str  # JSON text
    event_id: int = 0  # the row id: across channels, roughly the order of storing

    def to_dict(self) -> dict[str, object]:
        return json.loads(self.data)


def next_seq(session: Session, channel_id: int) -> int:
    """Take the channel's next seq; the row stays locked until the transaction ends, so
    seq order is commit order."""
    seq = session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(last_seq=Channel.last_seq + 1)
        .returning(Channel.last_seq)
    ).scalar_one()
    return int(seq)


def append(
    session: Session,
    channel: Channel,
    type_: str,
    sender: User | None,
    text: str | None = None,
    client_msg_id: str | None = None,
    extra: dict[str, object] | None = None,
    target_seq: int | None = None,
) -> StoredEvent:
    """Store one event in the channel's timeline with the next seq."""
    seq = next_seq(session, channel.id)
    event = Event(
        channel_id=channel.id,
        seq=seq,
        type=type_,
        sender_id=sender.id if sender else None,
        text=text,
        client_msg_id=client_msg_id,
        target_seq=target_seq,
        data=json.dumps(extra, ensure_ascii=False) if extra else None,
    )
    session.add(event)
    session.flush()
    return to_stored(event, channel.name, sender.username if sender else None)


def to_stored(event: Event, channel_name: str, sender_name: str | None) -> StoredEvent:
    """The wire shape of a stored event: the message as the REST API returns it, plus
    `channel` and `seq`."""
    room = channel_name.split(":", 1)[1] if channel_name.startswith("room:") else None
    body: dict[str, object] = {
        "id": event.id,
        "channel": channel_name,
        "room": room,
        "seq": event.seq,
        "sender": sender_name,
        "text": event.text,
        "created_at": iso(event.created_at),
        "client_msg_id": event.client_msg_id,
        "type": event.type,
    }
    if event.target_seq is not None:
        body["target_seq"] = event.target_seq
    if event.data:
        body.update(json.loads(event.data))
    return StoredEvent(
        event.channel_id, channel_name, event.seq, event.type,
        json.dumps(body, ensure_ascii=False), event.id,
    )


def read_after(
    session: Session, channel_id: int, channel_name: str, after: int, limit: int,
    before: int | None = None, newest: bool = False,
) -> list[StoredEvent]:
    """Events of one channel with seq > after (and < before), oldest first, at most limit.
    With newest, the last `limit` of that range."""
    query = (
        select(Event, User.username)
        .outerjoin(User, User.id == Event.sender_id)
        .where(Event.channel_id == channel_id, Event.seq > after)
    )
    if before is not None:
        query = query.where(Event.seq < before)
    query = query.order_by(Event.seq.desc() if newest else Event.seq).limit(limit)
    rows = [to_stored(ev, channel_name, sender) for ev, sender in session.execute(query)]
    if newest:
        rows.reverse()
    return rows


def heads(session: Session, channel_ids: list[int]) -> dict[int, int]:
    """The last seq of each channel."""
    if not channel_ids:
        return {}
    rows = session.execute(
        select(Channel.id, Channel.last_seq).where(Channel.id.in_(channel_ids))
    )
    return {cid: int(seq) for cid, seq in rows}
