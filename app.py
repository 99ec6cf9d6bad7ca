"""Entry for `flask --app app ...` (the CLI and the development server)."""

from chat import create_app

__all__ = ["create_app"]
