"""Users and credentials (API tokens and browser sessions), stored hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .concurrency import off_loop
from .models import Channel, Credential, Membership, User, utcnow
from .timeline import iso

TOKEN_PREFIX = "chat_"
# Compared against when the user does not exist, so a login takes as long either way.
_DUMMY_HASH: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: plain data that outlives the session that loaded it."""

    user_id: int
    username: str
    is_admin: bool
    credential_id: int
    key_id: str
    kind: str  # "api" or "session"


def user_view(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name or user.username,
        "is_admin": user.is_admin,
        "created_at": iso(user.created_at),
    }


def credential_view(cred: Credential) -> dict[str, object]:
    return {
        "id": cred.id,
        "name": cred.name,
        "kind": cred.kind,
        "created_at": iso(cred.created_at),
        "expires_at": iso(cred.expires_at) if cred.expires_at else None,
    }


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def hash_password(password: str, method: str) -> str:
    """The stored form of a password; slow on purpose, so call it outside a transaction."""
    return off_loop(generate_password_hash, password, method)


def create_user(
    session: Session,
    username: str,
    password_hash: str | None,
    *,
    display_name: str = "",
    is_admin: bool = False,
) -> User:
    """A new user (password_hash from hash_password) and their personal timeline."""
    user = User(
        username=username,
        display_name=display_name,
        is_admin=is_admin,
        password_hash=password_hash,
    )
    session.add(user)
    session.flush()
    personal = Channel(name=f"user:{username}", kind="user", private=True, created_by=user.id)
    session.add(personal)
    session.flush()
    # Its read marker is how far the user has read their notifications.
    session.add(Membership(channel_id=personal.id, user_id=user.id))
    session.flush()
    return user


def check_password(user: User | None, password: str, hash_method: str) -> bool:
    """Constant work whether or not the user exists."""
    if user is None or not user.password_hash:
        dummy = _DUMMY_HASH.get(hash_method)
        if dummy is None:
            dummy = _DUMMY_HASH[hash_method] = hash_password("x", hash_method)
        off_loop(check_password_hash, dummy, password)
        return False
    return off_loop(check_password_hash, user.password_hash, password)


def hash_secret(secret: str) -> str:
    """The stored form of a random token secret (API tokens, sessions, webhook URLs)."""
    # Secrets are 256 random bits, so a fast hash is enough; what matters is that the
    # database never holds a usable token.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_credential(
    session: Session, user: User, kind: str, name: str = "", lifetime: timedelta | None = None
) -> tuple[Credential, str]:
    """A new credential; returns it and the raw token, which is never stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    cred = Credential(
        user_id=user.id,
        kind=kind,
        name=name,
        key_id=key_id,
        secret_hash=hash_secret(secret),
        expires_at=utcnow() + lifetime if lifetime else None,
    )
    session.add(cred)
    session.flush()
    return cred, f"{TOKEN_PREFIX}{key_id}_{secret}"


def resolve_token(session: Session, raw: str) -> Principal | None:
    """The principal a raw token stands for, or None."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    parts = raw[len(TOKEN_PREFIX):].split("_", 1)
    if len(parts) != 2:
        return None
    key_id, secret = parts
    row = session.execute(
        select(Credential, User).join(User, User.id == Credential.user_id).where(
            Credential.key_id == key_id
        )
    ).first()
    if row is None:
        return None
    cred, user = row
    if not hmac.compare_digest(cred.secret_hash, hash_secret(secret)):
        return None
    if cred.expires_at is not None and cred.expires_at <= utcnow():
        return None
    return Principal(user.id, user.username, user.is_admin, cred.id, cred.key_id, cred.kind)


def list_credentials(session: Session, user_id: int, kind: str = "api") -> list[Credential]:
    return list(
        session.scalars(
            select(Credential)
            .where(Credential.user_id == user_id, Credential.kind == kind)
            .order_by(Credential.id)
        )
    )


