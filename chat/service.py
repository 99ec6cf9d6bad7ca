"""The service layer: the only code that touches both the store and the broker.

Every change is stored first, in one short transaction, and published after it commits.
A publish that fails loses nothing: the hubs catch streams up from the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import accounts, metrics, timeline
from .accounts import Principal
from .broker import Broker
from .cursor import CursorError, decode_positions, decode_seq
from .errors import ApiError
from .hub import BROKER_PREFIX, CONTROL_CHANNEL, Subscriber, pack
from .models import Channel, Credential, Event, Membership, Mention, User, Webhook, utcnow
from .presence import Presence
from .ratelimit import create_rate_limiter
from .store import Store
from .timeline import StoredEvent, iso
from .validation import dm_room

log = logging.getLogger(__name__)

HISTORY_MAX = 200
# Ids and seqs in URLs are unbounded integers; the database's are 64-bit.
MAX_ID = 2**63 - 1
TYPING_SECONDS = 6
SIGNATURE_TOLERANCE = 300
ROOM_KINDS = ("room", "dm")
NOTIFICATION_LEVELS = ("info", "success", "warning", "error")


@dataclass(frozen=True)
class WebhookInfo:
    """A webhook as a delivery needs it: plain data, no session."""

    id: int
    channel_id: int
    channel: str
    name: str
    created_by: int | None
    signing_secret: str | None


@dataclass
class StreamPlan:
    """Everything a stream needs, read before it starts: it holds no session afterwards."""

    single: bool
    channels: dict[str, int]  # channel name -> channel id
    positions: dict[int, int]  # channel id -> last seq the client has
    user_channel: str | None
    ready_rooms: list[dict[str, Any]]
    credential_key: str
    user_id: int
    reset_reason: str | None = None
    viewer_id: int | None = None  # who asked: online while the stream is open
    names: dict[int, str] = field(default_factory=dict)
    ready_extra: dict[str, Any] = field(default_factory=dict)


class ChatService:
    def __init__(self, store: Store, broker: Broker, config: dict[str, Any],
                 presence: Presence | None = None) -> None:
        self.store = store
        self.broker = broker
        self.config = config
        self.presence = presence or Presence()
        self.presence.announce = self.announce_presence
        self._typing_limit = create_rate_limiter(config.get("REDIS_URL"), rate=1.0, burst=5)
        self._typing_last: dict[tuple[int, int], tuple[bool, float]] = {}

    # -- publishing -----------------------------------------------------------------------

    def _publish(self, event: StoredEvent) -> None:
        self._send(event.channel, pack(event.channel, event.channel_id, event.seq, event.type,
                                       event.data))

    def _control(self, target: str, **args: Any) -> None:
        """An instruction to the streams subscribed to target (never stored)."""
        self._send(target, pack(target, None, None, "_control", json.dumps(args)))

    def _send(self, channel: str, payload: bytes) -> None:
        try:
            self.broker.publish(BROKER_PREFIX + channel, payload)
        except Exception as exc:  # the store has it; streams catch up from there
            log.warning("publish to %s failed (%s); streams will catch up from the store",
                        channel, exc)

    # -- identity -------------------------------------------------------------------------

    def register(self, username: str, password: str, display_name: str = "",
                 is_admin: bool = False) -> dict[str, object]:
        password_hash = accounts.hash_password(password, self.config["CHAT_PASSWORD_HASH"])
        try:
            with self.store.write() as s:
                if accounts.get_user(s, username) is not None:
                    raise ApiError(409, "username_taken", "That username is taken.", "username")
                user = accounts.create_user(
                    s, username, password_hash, display_name=display_name, is_admin=is_admin
                )
                return accounts.user_view(user)
        except IntegrityError:
            raise ApiError(409, "username_taken", "That username is taken.", "username") from None

    def login(self, username: str, password: str) -> tuple[dict[str, object], str]:
        """Check the password and open a browser session; returns the user and its token."""
        with self.store.read() as s:
            user = accounts.get_user(s, username)
            ok = accounts.check_password(user, password, self.config["CHAT_PASSWORD_HASH"])
        if not ok or user is None:
            raise ApiError(401, "invalid_credentials", "Wrong username or password.")
        with self.store.write() as s:
            user = s.get(User, user.id)
            assert user is not None
            _, token = accounts.issue_credential(
                s, user, "session", "browser",
                lifetime=timedelta(days=self.config["CHAT_SESSION_DAYS"]),
            )
            return accounts.user_view(user), token

    def authenticate(self, raw_token: str) -> Principal | None:
        with self.store.read() as s:
            return accounts.resolve_token(s, raw_token)

    def me(self, principal: Principal) -> dict[str, object]:
        with self.store.read() as s:
            user = s.get(User, principal.user_id)
            if user is None:
                raise ApiError(401, "not_authenticated", "This account no longer exists.")
            return accounts.user_view(user)

    def create_token(self, principal: Principal, name: str) -> dict[str, object]:
        with self.store.write() as s:
            user = s.get(User, principal.user_id)
            assert user is not None
            cred, token = accounts.issue_credential(s, user, "api", name)
            return {**accounts.credential_view(cred), "token": token}

    def list_tokens(self, principal: Principal) -> list[dict[str, object]]:
        with self.store.read() as s:
            return [accounts.credential_view(c)
                    for c in accounts.list_credentials(s, principal.user_id)]

    def revoke_credential(self, principal: Principal, credential_id: int,
                          kind: str = "api") -> None:
        """Delete a credential; streams opened with it end at once, on every worker."""
        with self.store.write() as s:
            cred = s.get(Credential, credential_id) if credential_id <= MAX_ID else None
            if cred is None or cred.kind != kind or (
                cred.user_id != principal.user_id and not principal.is_admin
            ):
                raise ApiError(404, "not_found", "No such token.")
            key_id = cred.key_id
            s.delete(cred)
        self._control(CONTROL_CHANNEL, op="end_credential", key_id=key_id)

    def logout(self, principal: Principal) -> None:
        self.revoke_credential(principal, principal.credential_id, kind="session")

    # -- rooms ----------------------------------------------------------------------------

    def _room(self, s: Session, principal: Principal, name: str,
              need_member: bool = True) -> tuple[Channel, Membership | None]:
        """The room and the caller's membership; 404 for a room the caller may not see
        (a private room they are not in; another pair's direct messages)."""
        row = s.execute(
            select(Channel, Membership)
            .outerjoin(Membership, and_(Membership.channel_id == Channel.id,
                                        Membership.user_id == principal.user_id))
            .where(Channel.name == f"room:{name}")
        ).first()
        hidden = row is not None and row[1] is None and row[0].private and (
            row[0].kind == "dm" or not principal.is_admin)
        if row is None or hidden:
            raise ApiError(404, "room_not_found", f"No room named '{name}'.")
        channel, membership = row
        if need_member and membership is None:
            raise ApiError(403, "not_a_member", f"Join '{name}' first.")
        return channel, membership

    def _join(self, s: Session, channel: Channel, user: User,
              by: User | None = None) -> StoredEvent:
        """Make user a member: a stored member.joined event, and a read marker just
        past it (their own join is not news to them)."""
        extra: dict[str, object] = {"user": user.username}
        if by is not None and by.id != user.id:
            extra["by"] = by.username
        joined = timeline.append(s, channel, "member.joined", by or user, extra=extra)
        s.add(Membership(channel_id=channel.id, user_id=user.id,
                         joined_seq=joined.seq - 1, read_seq=joined.seq))
        return joined

    def _joined(self, username: str, joined: StoredEvent) -> None:
        """After commit: the join reaches the room and the user's open streams."""
        self._publish(joined)
        self._control(f"user:{username}", op="join", channel=joined.channel,
                      cid=joined.channel_id, since=joined.seq - 1)

    def create_room(self, principal: Principal, name: str, title: str,
                    private: bool) -> dict[str, object]:
        try:
            with self.store.write() as s:
                if s.scalar(select(Channel.id).where(Channel.name == f"room:{name}")):
                    raise ApiError(409, "room_exists", f"A room named '{name}' exists.", "name")
                channel = Channel(name=f"room:{name}", kind="room", title=title,
                                  private=private, created_by=principal.user_id)
                s.add(channel)
                s.flush()
                # The creator's membership is the room's beginning, not an event in it.
                s.add(Membership(channel_id=channel.id, user_id=principal.user_id))
                s.flush()
                view = _room_view(channel, principal.username, member=True, read_seq=0)
        except IntegrityError:
            raise ApiError(409, "room_exists", f"A room named '{name}' exists.", "name") from None
        self._control(f"user:{principal.username}", op="join", channel=channel.name,
                      cid=channel.id, since=0)
        return view

    def list_rooms(self, principal: Principal) -> list[dict[str, object]]:
        with self.store.read() as s:
            rows = s.execute(
                select(Channel, Membership)
                .outerjoin(Membership, and_(Membership.channel_id == Channel.id,
                                            Membership.user_id == principal.user_id))
                .where(or_(
                    and_(Channel.kind == "room",
                         or_(Channel.private.is_(False), Membership.user_id.is_not(None))),
                    and_(Channel.kind == "dm", Membership.user_id.is_not(None)),
                ))
                .order_by(Channel.kind.desc(), Channel.name)
            ).all()
            unread = _unread_counts(s, principal.user_id)
            mentions = _mention_counts(s, principal.user_id)
            return [_room_view(c, principal.username, member=m is not None,
                               unread=unread.get(c.id, 0), mentions=mentions.get(c.id, 0),
                               read_seq=m.read_seq if m else None)
                    for c, m in rows]

    def join_room(self, principal: Principal, name: str) -> dict[str, object]:
        with self.store.write() as s:
            channel, membership = self._room(s, principal, name, need_member=False)
            _not_dm(channel)
            joined = None
            if membership is None:
                if channel.private:
                    raise ApiError(403, "invite_required", f"'{name}' is private: ask a member.")
                user = s.get(User, principal.user_id)
                assert user is not None
                joined = self._join(s, channel, user)
                s.flush()
            membership = s.get(Membership, (channel.id, principal.user_id))
            assert membership is not None
            view = _room_view(
                channel, principal.username, member=True,
                unread=_unread_counts(s, principal.user_id, channel.id).get(channel.id, 0),
                mentions=_mention_counts(s, principal.user_id, channel.id).get(channel.id, 0),
                read_seq=membership.read_seq)
        if joined is not None:
            self._joined(principal.username, joined)
        return view

    def leave_room(self, principal: Principal, name: str) -> None:
        with self.store.write() as s:
            channel, membership = self._room(s, principal, name)
            _not_dm(channel)
            assert membership is not None
            sender = s.get(User, principal.user_id)
            left = timeline.append(s, channel, "member.left", sender,
                                   extra={"user": principal.username})
            s.delete(membership)
        self._publish(left)
        self._control(f"user:{principal.username}", op="leave", channel=f"room:{name}")
        self._control(f"room:{name}", op="member_left", user_id=principal.user_id)

    def add_member(self, principal: Principal, name: str, username: str) -> dict[str, object]:
        with self.store.write() as s:
            channel, _ = self._room(s, principal, name)
            _not_dm(channel)
            user = accounts.get_user(s, username)
            if user is None:
                raise ApiError(404, "user_not_found", f"No user named '{username}'.", "username")
            joined = None
            if s.get(Membership, (channel.id, user.id)) is None:
                joined = self._join(s, channel, user, by=s.get(User, principal.user_id))
            view = {"room": name, "username": username, "added": joined is not None}
        if joined is not None:
            self._joined(username, joined)
        return view

    def mark_read(self, principal: Principal, name: str, seq: int) -> dict[str, object]:
        """Move the caller's read marker forward (never back); when it moves, the caller's
        other devices get a stored `read` event in the caller's own timeline."""
        with self.store.write() as s:
            channel, membership = self._room(s, principal, name)
            assert membership is not None
            if seq > channel.last_seq:
                raise ApiError(400, "invalid_field",
                               f"'seq' is past the room's last seq ({channel.last_seq}).", "seq")
            moved = seq > membership.read_seq
            if moved:
                membership.read_seq = seq
                s.flush()
            state: dict[str, object] = {
                "room": name,
                "read_seq": membership.read_seq,
                "unread": _unread_counts(s, principal.user_id, channel.id).get(channel.id, 0),
                "mentions": _mention_counts(s, principal.user_id, channel.id).get(
                    channel.id, 0),
            }
            event = None
            if moved:
                personal = _personal_channel(s, principal.username)
                event = timeline.append(s, personal, "read", None, extra=state)
        if event is not None:
            self._publish(event)
        return state

    # -- messages -------------------------------------------------------------------------

    def post_message(self, principal: Principal, room: str, text: str,
                     client_msg_id: str | None) -> tuple[dict[str, object], bool]:
        """Store and publish a message; with a client_msg_id seen before from this sender
        in this room, return the original and store nothing. Returns (message, created)."""
        return self._post(principal, room, text, client_msg_id)

    def send_direct(self, principal: Principal, username: str, text: str,
                    client_msg_id: str | None) -> tuple[dict[str, object], bool]:
        """A message in the two users' direct-message room, made on first use."""
        if username == principal.username:
            raise ApiError(400, "invalid_field", "Send direct messages to someone else.",
                           "username")
        room = dm_room(principal.username, username)
        for attempt in range(2):
            try:
                created = self._ensure_dm(principal, username, room)
                break
            except IntegrityError:  # the other side opened it at the same moment
                if attempt:
                    raise
        for name, joined in created:
            self._joined(name, joined)
        return self._post(principal, room, text, client_msg_id)

    def _ensure_dm(self, principal: Principal, username: str,
                   room: str) -> list[tuple[str, StoredEvent]]:
        with self.store.write() as s:
            if s.scalar(select(Channel.id).where(Channel.name == f"room:{room}")):
                return []
            other = accounts.get_user(s, username)
            if other is None:
                raise ApiError(404, "user_not_found", f"No user named '{username}'.",
                               "username")
            me = s.get(User, principal.user_id)
            assert me is not None
            channel = Channel(name=f"room:{room}", kind="dm", private=True,
                              created_by=me.id)
            s.add(channel)
            s.flush()
            return [(user.username, self._join(s, channel, user, by=me)) for user in (me, other)]

    def _post(self, principal: Principal, room: str, text: str,
              client_msg_id: str | None) -> tuple[dict[str, object], bool]:
        for attempt in range(2):
            try:
                with self.store.write() as s:
                    channel, _ = self._room(s, principal, room)
                    if client_msg_id is not None:
                        original = _find_by_client_id(s, channel, principal, client_msg_id)
                        if original is not None:
                            return original.to_dict(), False
                    sender = s.get(User, principal.user_id)
                    assert sender is not None
                    stored = timeline.append(s, channel, "message", sender, text, client_msg_id)
                    notes = _mention(s, channel, room, sender, stored, text)
                break
            except IntegrityError:
                # A concurrent request with the same client_msg_id won; return its message.
                if attempt or client_msg_id is None:
                    raise
        metrics.MESSAGES_STORED.inc()
        self._publish(stored)
        for note in notes:
            self._publish(note)
        return stored.to_dict(), True

    def typing(self, principal: Principal, room: str, typing: bool) -> dict[str, object]:
        """An ephemeral `typing` event to the room: never stored, valid for TYPING_SECONDS
        unless renewed. A repeat of the same state within a second is not sent again."""
        with self.store.read() as s:
            channel, _ = self._room(s, principal, room)
            cid, name = channel.id, channel.name
        wait = self._typing_limit.take(f"{principal.user_id}")
        if wait:
            raise ApiError(429, "too_many_requests", "Typing updates are coming too fast.",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        now = time.monotonic()
        last = self._typing_last.get((principal.user_id, cid))
        if last is not None and last[0] == typing and now - last[1] < 1.0:
            return {"room": room, "typing": typing, "sent": False}
        self._typing_last[(principal.user_id, cid)] = (typing, now)
        if len(self._typing_last) > 100_000:
            self._typing_last.clear()
        data = {"channel": name, "room": room, "type": "typing", "user": principal.username,
                "typing": typing, "expires_in": TYPING_SECONDS if typing else 0}
        self._send(name, pack(name, cid, None, "typing", json.dumps(data)))
        return {"room": room, "typing": typing, "sent": True}

    def announce_presence(self, user_id: int, online: bool) -> None:
        """A user came online or went offline: an ephemeral presence event to each of
        their rooms."""
        with self.store.read() as s:
            username = s.scalar(select(User.username).where(User.id == user_id))
            rooms = s.execute(
                select(Channel.id, Channel.name)
                .join(Membership, Membership.channel_id == Channel.id)
                .where(Membership.user_id == user_id, Channel.kind.in_(ROOM_KINDS))
            ).all()
        if username is None:
            return
        for cid, name in rooms:
            data = {"channel": name, "room": name.split(":", 1)[1], "type": "presence",
                    "user": username, "online": online}
            self._send(name, pack(name, cid, None, "presence", json.dumps(data)))

    def room_members(self, principal: Principal, room: str) -> dict[str, object]:
        """The room's members, each with whether they are online."""
        with self.store.read() as s:
            channel, _ = self._room(s, principal, room)
            members = s.execute(
                select(User.id, User.username, User.display_name)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.channel_id == channel.id)
                .order_by(User.username)
            ).all()
        online = self.presence.online([uid for uid, _, _ in members])
        return {"room": room,
                "members": [{"username": name, "display_name": display or name,
                             "online": uid in online} for uid, name, display in members],
                "online": sum(1 for uid, _, _ in members if uid in online)}

    def room_presence(self, principal: Principal, room: str) -> dict[str, object]:
        """The room's members who are online now."""
        with self.store.read() as s:
            channel, _ = self._room(s, principal, room)
            members = s.execute(
                select(User.id, User.username)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.channel_id == channel.id)
            ).all()
        online = self.presence.online([uid for uid, _ in members])
        names = sorted(name for uid, name in members if uid in online)
        return {"room": room, "online": names, "count": len(names), "members": len(members)}

    def edit_message(self, principal: Principal, room: str, seq: int,
                     text: str) -> dict[str, object]:
        """Change a message's text (its sender only): the message row holds the current
        text, and a stored message.updated event tells the streams."""
        with self.store.write() as s:
            channel, message = self._own_message(s, principal, room, seq)
            message.text = text
            message.data = json.dumps({"edited_at": iso(utcnow())})
            sender = s.get(User, principal.user_id)
            event = timeline.append(s, channel, "message.updated", sender, text,
                                    extra=json.loads(message.data), target_seq=seq)
            current = timeline.to_stored(message, channel.name, principal.username)
        self._publish(event)
        return current.to_dict()

    def delete_message(self, principal: Principal, room: str, seq: int) -> None:
        """Delete a message (its sender only): its text, and every earlier text of it, is
        removed from the store; a stored message.deleted event tells the streams."""
        with self.store.write() as s:
            channel, message = self._own_message(s, principal, room, seq)
            message.text = None
            message.data = json.dumps({"deleted": True})
            s.execute(update(Event)
                      .where(Event.channel_id == channel.id, Event.target_seq == seq,
                             Event.type == "message.updated")
                      .values(text=None))
            s.execute(delete(Mention).where(Mention.event_id == message.id))
            sender = s.get(User, principal.user_id)
            event = timeline.append(s, channel, "message.deleted", sender,
                                    extra={"deleted": True}, target_seq=seq)
        self._publish(event)

    def _own_message(self, s: Session, principal: Principal, room: str,
                     seq: int) -> tuple[Channel, Event]:
        channel, _ = self._room(s, principal, room)
        message = None if seq > MAX_ID else s.scalar(
            select(Event).where(Event.channel_id == channel.id, Event.seq == seq,
                                Event.type == "message"))
        if message is None or (message.data and json.loads(message.data).get("deleted")):
            raise ApiError(404, "message_not_found", f"No message {seq} in '{room}'.")
        if message.sender_id != principal.user_id:
            raise ApiError(403, "not_the_sender", "Only its sender may change a message.")
        return channel, message

    def history(self, principal: Principal, room: str, before: int | None,
                after: int | None, limit: int) -> list[dict[str, object]]:
        with self.store.read() as s:
            channel, _ = self._room(s, principal, room)
            newest = after is None
            events = timeline.read_after(s, channel.id, channel.name, after or 0, limit,
                                         before=before, newest=newest)
            return [e.to_dict() for e in events]

    # -- incoming webhooks ------------------------------------------------------------------

    def create_webhook(self, principal: Principal, room: str, name: str,
                       signed: bool) -> dict[str, object]:
        """A webhook for a room; its URL (and signing secret) are shown only now."""
        with self.store.write() as s:
            channel, _ = self._room(s, principal, room)
            key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
            hook = Webhook(channel_id=channel.id, created_by=principal.user_id, name=name,
                           key_id=key_id, secret_hash=accounts.hash_secret(secret),
                           signing_secret=secrets.token_hex(32) if signed else None)
            s.add(hook)
            s.flush()
            view = _webhook_view(hook, room)
            view["url"] = f"/hooks/wh_{key_id}_{secret}"
            if hook.signing_secret:
                view["signing_secret"] = hook.signing_secret
            return view

    def list_webhooks(self, principal: Principal, room: str) -> list[dict[str, object]]:
        with self.store.read() as s:
            channel, _ = self._room(s, principal, room)
            hooks = s.scalars(select(Webhook).where(Webhook.channel_id == channel.id)
                              .order_by(Webhook.id))
            return [_webhook_view(h, room) for h in hooks]

    def delete_webhook(self, principal: Principal, room: str, webhook_id: int) -> None:
        with self.store.write() as s:
            channel, _ = self._room(s, principal, room)
            hook = s.get(Webhook, webhook_id) if webhook_id <= MAX_ID else None
            if hook is None or hook.channel_id != channel.id:
                raise ApiError(404, "webhook_not_found", "No such webhook in this room.")
            s.delete(hook)

    def webhook_for(self, token: str) -> WebhookInfo:
        """The webhook a URL token stands for; 404 for anything else."""
        parts = token.split("_", 2)
        if len(parts) == 3 and parts[0] == "wh" and len(token) <= 200:
            with self.store.read() as s:
                row = s.execute(
                    select(Webhook, Channel.name)
                    .join(Channel, Channel.id == Webhook.channel_id)
                    .where(Webhook.key_id == parts[1])
                ).first()
            if row is not None and hmac.compare_digest(row[0].secret_hash,
                                                       accounts.hash_secret(parts[2])):
                hook, channel_name = row
                return WebhookInfo(hook.id, hook.channel_id, channel_name, hook.name,
                                   hook.created_by, hook.signing_secret)
        raise ApiError(404, "webhook_not_found", "No such webhook.")

    def check_webhook_signature(self, hook: WebhookInfo, raw: bytes,
                                header: str | None) -> None:
        """For a signed webhook: `X-Chat-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
        "<t>.<raw body>">`, at most five minutes off."""
        if hook.signing_secret is None:
            return
        if not header:
            raise ApiError(401, "signature_required", "This webhook needs X-Chat-Signature.")
        fields: dict[str, list[str]] = {}
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            fields.setdefault(key, []).append(value)
        stamp = (fields.get("t") or [""])[0]
        if not stamp.isdigit() or len(stamp) > 12:
            raise ApiError(401, "bad_signature", "X-Chat-Signature needs t=<unix time>.")
        if abs(time.time() - int(stamp)) > SIGNATURE_TOLERANCE:
            raise ApiError(401, "signature_expired",
                           "The signature's time is more than five minutes off.")
        expected = hmac.new(hook.signing_secret.encode(), stamp.encode() + b"." + raw,
                            hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, given) for given in fields.get("v1", [])):
            raise ApiError(401, "bad_signature", "The signature does not match the body.")

    def post_via_webhook(self, hook: WebhookInfo, text: str, username: str | None,
                         key: str | None) -> tuple[dict[str, object], bool]:
        """A bot message from a webhook; the same Idempotency-Key again stores nothing.

        The message has no user behind it (sender_id is NULL): it is unread for every
        member, the hook's creator too, and no user may edit or delete it."""
        client_key = f"hook{hook.id}:{key}" if key else None
        with self.store.write() as s:
            # Locking the hook's row makes two deliveries of one hook take turns (the
            # idempotency index does not cover rows without a sender), and a delivery
            # that races the hook's deletion either lands first or finds it gone.
            if s.scalar(select(Webhook.id).where(Webhook.id == hook.id).with_for_update()) \
                    is None:
                raise ApiError(404, "webhook_not_found", "No such webhook.")
            channel = s.get(Channel, hook.channel_id)
            if channel is None:
                raise ApiError(404, "webhook_not_found", "No such webhook.")
            if client_key is not None:
                original = s.scalar(select(Event).where(
                    Event.channel_id == channel.id, Event.sender_id.is_(None),
                    Event.client_msg_id == client_key))
                if original is not None:
                    return timeline.to_stored(original, channel.name, None).to_dict(), False
            sender = username or hook.name
            stored = timeline.append(
                s, channel, "message", None, text, client_key,
                extra={"sender": sender, "bot": True, "webhook": hook.name})
            notes = _mention(s, channel, channel.name.split(":", 1)[1], None, stored, text,
                             sender_name=sender)
        metrics.MESSAGES_STORED.inc()
        self._publish(stored)
        for note in notes:
            self._publish(note)
        return stored.to_dict(), True

    # -- notifications --------------------------------------------------------------------

    def notify(self, principal: Principal, username: str, title: str, body: str | None,
               url: str | None, level: str) -> dict[str, object]:
        """A notification into a user's timeline, from that user or an admin."""
        if username != principal.username and not principal.is_admin:
            raise ApiError(403, "forbidden", "Only the user or an admin may notify a user.")
        with self.store.write() as s:
            user = accounts.get_user(s, username)
            if user is None:
                raise ApiError(404, "user_not_found", f"No user named '{username}'.",
                               "username")
            sender = s.get(User, principal.user_id)
            stored = timeline.append(
                s, _personal_channel(s, username), "notification", sender,
                extra={"kind": "notification", "title": title, "body": body, "url": url,
                       "level": level},
            )
        self._publish(stored)
        return stored.to_dict()

    def notifications(self, principal: Principal, before: int | None,
                      limit: int) -> dict[str, object]:
        """The caller's notifications (newest `limit`, oldest first) and the unread count."""
        with self.store.read() as s:
            personal = _personal_channel(s, principal.username)
            membership = s.get(Membership, (personal.id, principal.user_id))
            read_seq = membership.read_seq if membership else 0
            query = (select(Event, User.username)
                     .outerjoin(User, User.id == Event.sender_id)
                     .where(Event.channel_id == personal.id, Event.type == "notification"))
            if before is not None:
                query = query.where(Event.seq < before)
            rows = s.execute(query.order_by(Event.seq.desc()).limit(limit)).all()
            items = [timeline.to_stored(e, personal.name, sender).to_dict()
                     for e, sender in reversed(rows)]
            return {"notifications": items, "read_seq": read_seq,
                    "unread": _unread_notifications(s, personal.id, read_seq)}

    def mark_notifications_read(self, principal: Principal, seq: int) -> dict[str, object]:
        """Move the notifications read marker forward; other devices get a `read` event."""
        with self.store.write() as s:
            personal, membership = self._personal_membership(s, principal)
            if seq > personal.last_seq:
                raise ApiError(400, "invalid_field",
                               f"'seq' is past your timeline's last seq ({personal.last_seq}).",
                               "seq")
            moved = seq > membership.read_seq
            if moved:
                membership.read_seq = seq
                s.flush()
            state: dict[str, object] = {
                "room": None, "read_seq": membership.read_seq,
                "unread": _unread_notifications(s, personal.id, membership.read_seq)}
            event = timeline.append(s, personal, "read", None, extra=state) if moved else None
        if event is not None:
            self._publish(event)
        return state

    def _personal_membership(self, s: Session,
                             principal: Principal) -> tuple[Channel, Membership]:
        personal = _personal_channel(s, principal.username)
        membership = s.get(Membership, (personal.id, principal.user_id))
        if membership is None:  # a user made before personal read markers existed
            membership = Membership(channel_id=personal.id, user_id=principal.user_id)
            s.add(membership)
            s.flush()
        return personal, membership

    # -- streams --------------------------------------------------------------------------

    def room_stream_plan(self, principal: Principal, room: str,
                         cursor: str | None) -> StreamPlan:
        with self.store.read() as s:
            channel, membership = self._room(s, principal, room)
            read_seq = membership.read_seq if membership else 0
            unread = _unread_counts(s, principal.user_id, channel.id).get(channel.id, 0)
            mentions = _mention_counts(s, principal.user_id, channel.id).get(channel.id, 0)
            head = channel.last_seq
            plan = StreamPlan(
                single=True,
                channels={channel.name: channel.id},
                positions={channel.id: head},
                user_channel=None,
                ready_rooms=[{"room": room, "kind": channel.kind, "last_seq": head,
                              "unread": unread, "mentions": mentions,
                              "read_seq": read_seq}],
                credential_key=principal.key_id,
                user_id=principal.user_id,
                viewer_id=principal.user_id,
                names={channel.id: channel.name},
            )
        if cursor is not None:
            try:
                seq = decode_seq(cursor)
            except CursorError:
                plan.reset_reason = "malformed_cursor"
                return plan
            if seq > head:
                plan.reset_reason = "unknown_cursor"
            elif head - seq > self.config["CHAT_REPLAY_LIMIT"]:
                plan.reset_reason = "too_far_behind"
            else:
                plan.positions[channel.id] = seq
        return plan

    def user_stream_plan(self, principal: Principal, username: str,
                         cursor: str | None) -> StreamPlan:
        if username != principal.username and not principal.is_admin:
            raise ApiError(403, "forbidden", "You may only read your own stream.")
        with self.store.read() as s:
            user = accounts.get_user(s, username)
            personal = s.scalar(select(Channel).where(Channel.name == f"user:{username}"))
            if user is None or personal is None:
                raise ApiError(404, "user_not_found", f"No user named '{username}'.",
                               "username")
            rooms = s.execute(
                select(Channel, Membership)
                .join(Membership, Membership.channel_id == Channel.id)
                .where(Membership.user_id == user.id,
                       # An admin watching someone's stream does not read their DMs.
                       Channel.kind.in_(ROOM_KINDS if user.id == principal.user_id
                                        else ("room",)))
                .order_by(Channel.kind.desc(), Channel.name)
            ).all()
            unread = _unread_counts(s, user.id)
            mentions = _mention_counts(s, user.id)
            own = s.get(Membership, (personal.id, user.id))
            notes_read = own.read_seq if own else 0
            notes = {"unread": _unread_notifications(s, personal.id, notes_read),
                     "read_seq": notes_read}
        heads = {personal.id: personal.last_seq}
        joined = {personal.id: 0}
        names = {personal.id: personal.name}
        ready_rooms = []
        for channel, membership in rooms:
            heads[channel.id] = channel.last_seq
            joined[channel.id] = membership.joined_seq
            names[channel.id] = channel.name
            ready_rooms.append({"room": channel.name.split(":", 1)[1],
                                "kind": channel.kind,
                                "last_seq": channel.last_seq,
                                "unread": unread.get(channel.id, 0),
                                "mentions": mentions.get(channel.id, 0),
                                "read_seq": membership.read_seq})
        plan = StreamPlan(
            single=False,
            channels={name: cid for cid, name in names.items()},
            positions=dict(heads),
            user_channel=personal.name,
            ready_rooms=ready_rooms,
            credential_key=principal.key_id,
            user_id=user.id,
            viewer_id=principal.user_id,
            names=names,
            ready_extra={"notifications": notes},
        )
        if cursor is None:
            return plan
        try:
            given = decode_positions(cursor)
        except CursorError:
            plan.reset_reason = "malformed_cursor"
            return plan
        if personal.id not in given:
            plan.reset_reason = "unknown_cursor"
            return plan
        # A room joined since the cursor was made is read from the moment of joining;
        # a room left since is ignored.
        wanted = {cid: given.get(cid, joined[cid]) for cid in heads}
        if any(seq > heads[cid] for cid, seq in wanted.items()):
            plan.reset_reason = "unknown_cursor"
        elif sum(heads[cid] - seq for cid, seq in wanted.items()) > \
                self.config["CHAT_REPLAY_LIMIT"]:
            plan.reset_reason = "too_far_behind"
        else:
            plan.positions = wanted
        return plan

    # -- housekeeping for the hub -----------------------------------------------------------

    def stale_streams(self, subs: list[Subscriber]) -> list[Subscriber]:
        """The streams whose credential was revoked or expired, or whose room membership
        is gone: the backstop for a revocation or leave the broker did not deliver."""
        keys = {sub.credential_key for sub in subs if sub.credential_key}
        pairs = {(sub.user_id, sub.room_id) for sub in subs if sub.room_id is not None}
        with self.store.read() as s:
            live_keys: set[str] = set()
            for chunk in _chunks(sorted(keys), 500):
                live_keys.update(s.scalars(
                    select(Credential.key_id).where(
                        Credential.key_id.in_(chunk),
                        or_(Credential.expires_at.is_(None), Credential.expires_at > utcnow()),
                    )
                ))
            members: set[tuple[int, int]] = set()
            for chunk in _chunks(sorted({room for _, room in pairs}), 500):
                members.update((u, c) for u, c in s.execute(
                    select(Membership.user_id, Membership.channel_id)
                    .where(Membership.channel_id.in_(chunk))
                ))
        return [sub for sub in subs
                if (sub.credential_key and sub.credential_key not in live_keys)
                or (sub.room_id is not None and (sub.user_id, sub.room_id) not in members)]

    def heads(self, channel_ids: list[int]) -> dict[int, int]:
        with self.store.read() as s:
            return timeline.heads(s, channel_ids)


def _webhook_view(hook: Webhook, room: str) -> dict[str, object]:
    return {"id": hook.id, "room": room, "name": hook.name,
            "signed": hook.signing_secret is not None, "created_at": iso(hook.created_at)}


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _room_view(channel: Channel, me: str, *, member: bool, unread: int = 0,
               mentions: int = 0, read_seq: int | None = None) -> dict[str, object]:
    name = channel.name.split(":", 1)[1]
    view: dict[str, object] = {
        "name": name,
        "kind": channel.kind,
        "title": channel.title,
        "private": channel.private,
        "last_seq": channel.last_seq,
        "unread": unread,
        "mentions": mentions,
        "member": member,
        "read_seq": read_seq,
        "created_at": iso(channel.created_at),
    }
    if channel.kind == "dm":
        left, _, right = name.partition("~")
        view["with"] = right if left == me else left
    return view


def _not_dm(channel: Channel) -> None:
    if channel.kind == "dm":
        raise ApiError(403, "direct_message_room",
                       "Direct-message rooms have exactly their two members.")


def _personal_channel(s: Session, username: str) -> Channel:
    channel = s.scalar(select(Channel).where(Channel.name == f"user:{username}"))
    assert channel is not None, "every user has a personal timeline"
    return channel


def _unread_counts(s: Session, user_id: int, channel_id: int | None = None) -> dict[int, int]:
    """Messages from others after the user's read marker, per room."""
    query = (
        select(Membership.channel_id, func.count(Event.id))
        .join(Event, and_(Event.channel_id == Membership.channel_id,
                          Event.seq > Membership.read_seq))
        .join(Channel, Channel.id == Membership.channel_id)
        .where(Membership.user_id == user_id, Event.type == "message",
               Event.text.is_not(None),  # not deleted
               Channel.kind.in_(ROOM_KINDS),
               or_(Event.sender_id.is_(None), Event.sender_id != user_id))
        .group_by(Membership.channel_id)
    )
    if channel_id is not None:
        query = query.where(Membership.channel_id == channel_id)
    return {cid: int(count) for cid, count in s.execute(query)}


def _unread_notifications(s: Session, channel_id: int, read_seq: int) -> int:
    return int(s.scalar(
        select(func.count(Event.id)).where(Event.channel_id == channel_id,
                                           Event.type == "notification",
                                           Event.seq > read_seq)
    ) or 0)


def _mention_counts(s: Session, user_id: int, channel_id: int | None = None) -> dict[int, int]:
    """Messages naming the user after their read marker, per room."""
    query = (
        select(Membership.channel_id, func.count(Mention.event_id))
        .join(Mention, and_(Mention.channel_id == Membership.channel_id,
                            Mention.user_id == Membership.user_id,
                            Mention.seq > Membership.read_seq))
        .where(Membership.user_id == user_id)
        .group_by(Membership.channel_id)
    )
    if channel_id is not None:
        query = query.where(Membership.channel_id == channel_id)
    return {cid: int(count) for cid, count in s.execute(query)}


MENTION_RE = re.compile(r"(?<![\w@.])@([a-z0-9][a-z0-9_.-]{0,31})")
MAX_MENTIONS = 20


def _mention(s: Session, channel: Channel, room: str, sender: User | None,
             message: StoredEvent, text: str, sender_name: str | None = None
             ) -> list[StoredEvent]:
    """Record the members a message names with @name, and put a notification into each
    one's timeline. Returns the notifications, to publish after commit. A bot message has
    no sender user, only its shown name."""
    names: set[str] = set()
    for match in MENTION_RE.finditer(text):
        name = match.group(1)
        names.update({name, name.rstrip("._-")})
        if len(names) > 2 * MAX_MENTIONS:
            break
    if sender is not None:
        names.discard(sender.username)
        sender_name = sender.username
    else:  # a webhook's message: its shown name is whatever the payload said
        sender_name = f"{sender_name} (bot)"
    names.discard("")
    if not names:
        return []
    members = s.execute(
        select(User.id, User.username)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.channel_id == channel.id, User.username.in_(sorted(names)))
        .order_by(User.username)
        .limit(MAX_MENTIONS)
    ).all()
    notes = []
    for user_id, username in members:
        s.add(Mention(event_id=message.event_id, user_id=user_id, channel_id=channel.id,
                      seq=message.seq))
        notes.append(timeline.append(
            s, _personal_channel(s, username), "notification", sender,
            # No excerpt: the message may be edited or deleted later, and its text must
            # then be gone everywhere. The reference finds it.
            extra={"kind": "mention", "title": f"{sender_name} mentioned you in {room}",
                   "body": None, "level": "info", "url": None,
                   "ref": {"room": room, "seq": message.seq}},
        ))
    return notes


def _find_by_client_id(s: Session, channel: Channel, principal: Principal,
                       client_msg_id: str) -> StoredEvent | None:
    row = s.execute(
        select(Event).where(Event.channel_id == channel.id,
                            Event.sender_id == principal.user_id,
                            Event.client_msg_id == client_msg_id)
    ).scalar_one_or_none()
    if row is None:
        return None
    return timeline.to_stored(row, channel.name, principal.username)
