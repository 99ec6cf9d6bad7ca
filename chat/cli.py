"""Operator commands: flask --app app init-db | create-user | create-token | send | tail |
list-tokens | revoke-token."""

from __future__ import annotations

import json
import time

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from . import accounts, timeline
from .accounts import Principal
from .errors import ApiError
from .extension import chat_extension
from .models import Channel
from .rooms import message_text
from .validation import NAME_RE, room_ref


def init_app(app: Flask) -> None:
    for command in (init_db, create_user, create_token, send, tail, list_tokens,
                    revoke_token):
        app.cli.add_command(command)


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create the database tables (safe to run again)."""
    chat_extension().store.create_all()
    click.echo("database ready", err=True)


@click.command("create-user")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password", help="Password (prompted when omitted).")
@with_appcontext
def create_user(name: str, admin: bool, password: str | None) -> None:
    """Create a user."""
    if not NAME_RE.fullmatch(name):
        raise click.BadParameter("1-32 characters of a-z, 0-9, '_', '.', '-'", param_hint="NAME")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    store = chat_extension().store
    store.create_all()
    password_hash = accounts.hash_password(password, current_app.config["CHAT_PASSWORD_HASH"])
    with store.write() as s:
        if accounts.get_user(s, name) is not None:
            raise click.ClickException(f"user {name!r} exists")
        accounts.create_user(s, name, password_hash, is_admin=admin)
    click.echo(f"created user {name}{' (admin)' if admin else ''}", err=True)


@click.command("create-token")
@click.argument("name")
@click.option("--name", "label", default="cli", help="A label for the token.")
@with_appcontext
def create_token(name: str, label: str) -> None:
    """Create an API token for user NAME and print it alone on stdout."""
    store = chat_extension().store
    with store.write() as s:
        user = accounts.get_user(s, name)
        if user is None:
            raise click.ClickException(f"no user {name!r}")
        _, token = accounts.issue_credential(s, user, "api", label)
    click.echo(token)


def _cli_principal(username: str) -> Principal:
    """Act as USER from the command line (an operator on the server's machine)."""
    with chat_extension().store.read() as s:
        user = accounts.get_user(s, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        return Principal(user.id, user.username, user.is_admin, 0, "cli", "cli")


@click.command("send")
@click.argument("room")
@click.argument("text")
@click.option("--as", "username", required=True, help="The user who sends it.")
@with_appcontext
def send(room: str, text: str, username: str) -> None:
    """Send TEXT to ROOM as a user; prints the stored message."""
    try:
        # The message rules of the API (not blank, at most CHAT_MAX_MESSAGE_BYTES, valid
        # Unicode) hold for the command line too.
        text = message_text({"text": text})
        message, _ = chat_extension().service.post_message(
            _cli_principal(username), room_ref(room), text, None)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(message))


@click.command("tail")
@click.argument("stream")
@click.option("--last-event-id", "last_id", type=click.IntRange(min=0), default=None,
              help="Resume after this seq (default: only new events).")
@click.option("--follow/--no-follow", default=True, help="Keep printing new events.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="Seconds between looks at the store.")
@with_appcontext
def tail(stream: str, last_id: int | None, follow: bool, interval: float) -> None:
    """Print STREAM's events as JSON lines as they are stored: a room name, or
    user:NAME for a user's own timeline. Each line's "seq" resumes with --last-event-id."""
    store = chat_extension().store
    try:
        name = stream if stream.startswith("user:") else f"room:{room_ref(stream)}"
    except ApiError as exc:  # a bad room name: a usage error, not a traceback
        raise click.ClickException(exc.message) from None
    with store.read() as s:
        channel = s.scalar(select(Channel).where(Channel.name == name))
        if channel is None:
            raise click.ClickException(f"no stream {stream!r}")
        cid, position = channel.id, channel.last_seq if last_id is None else last_id
    try:
        while True:
            with store.read() as s:
                events = timeline.read_after(s, cid, name, position, 500)
            for event in events:
                click.echo(event.data)
                position = event.seq
            if not follow and len(events) < 500:
                return
            if len(events) < 500:
                time.sleep(interval)
    except KeyboardInterrupt:
        return


@click.command("list-tokens")
@click.argument("name")
@with_appcontext
def list_tokens(name: str) -> None:
    """List user NAME's API tokens (never their secrets)."""
    with chat_extension().store.read() as s:
        user = accounts.get_user(s, name)
        if user is None:
            raise click.ClickException(f"no user {name!r}")
        for cred in accounts.list_credentials(s, user.id):
            view = accounts.credential_view(cred)
            click.echo(f"{view['id']}\t{view['name']}\t{view['created_at']}")


@click.command("revoke-token")
@click.argument("token_id", type=int)
@with_appcontext
def revoke_token(token_id: int) -> None:
    """Revoke an API token by its id; streams opened with it end."""
    admin = Principal(0, "cli", True, 0, "cli", "cli")
    try:
        chat_extension().service.revoke_credential(admin, token_id)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked token {token_id}", err=True)
