"""Operator commands: flask --app app init-db | create-user | create-token."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import accounts
from .extension import chat_extension
from .validation import NAME_RE


def init_app(app: Flask) -> None:
    app.cli.add_command(init_db)
    app.cli.add_command(create_user)
    app.cli.add_command(create_token)


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
