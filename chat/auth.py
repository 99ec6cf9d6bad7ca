"""Who is asking: session cookies, bearer tokens, stream tokens; the identity endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import validation as v
from .accounts import Principal
from .errors import ApiError
from .extension import chat_service

bp = Blueprint("auth", __name__, url_prefix="/api")

SESSION_COOKIE = "chat_session"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def current_principal(allow_query_token: bool = False) -> Principal | None:
    """Authenticate the request once: bearer header, then (streams only) the query token,
    then the session cookie."""
    if "principal" in g:
        return g.principal  # type: ignore[no-any-return]
    principal = None
    service = chat_service()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise ApiError(401, "not_authenticated", "Use 'Authorization: Bearer <token>'.")
        principal = service.authenticate(raw.strip())
        if principal is None:
            raise ApiError(401, "invalid_token", "The token is invalid or revoked.")
    elif allow_query_token and request.args.get("access_token"):
        principal = service.authenticate(request.args["access_token"])
        if principal is None:
            raise ApiError(401, "invalid_token", "The token is invalid or revoked.")
    elif request.cookies.get(SESSION_COOKIE):
        principal = service.authenticate(request.cookies[SESSION_COOKIE])
        if principal is not None and principal.kind == "session":
            _check_same_origin()
        else:
            principal = None
    g.principal = principal
    return principal


def require_principal(allow_query_token: bool = False) -> Principal:
    """The authenticated caller, or a 401."""
    principal = current_principal(allow_query_token)
    if principal is None:
        raise ApiError(401, "not_authenticated", "Log in or send a bearer token.")
    return principal


def _check_same_origin() -> None:
    """A cookie-authenticated request that changes state must come from this site."""
    if request.method in _SAFE_METHODS:
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise ApiError(403, "cross_site_request", "Cross-site requests are not allowed.")
    origin = request.headers.get("Origin")
    # Hosts, not schemes: behind a proxy that ends TLS the app sees http, the page https.
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "cross_site_request", "Cross-site requests are not allowed.")


@bp.post("/users")
def register() -> tuple[Response, int]:
    if not current_app.config["CHAT_OPEN_REGISTRATION"]:
        raise ApiError(403, "registration_closed", "Registration is closed; ask an admin.")
    body = v.read_body()
    username = v.name(body, "username")
    password = v.string(body, "password", min_length=8, max_length=200, strip=False)
    display_name = v.string(body, "display_name", required=False, max_length=80) or ""
    assert password is not None
    return jsonify(chat_service().register(username, password, display_name)), 201


@bp.post("/session")
def login() -> Response:
    body = v.read_body(form_ok=True)
    username = v.string(body, "username", max_length=64) or ""
    password = v.string(body, "password", max_length=200, strip=False) or ""
    user, token = chat_service().login(username, password)
    response = jsonify(user)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=current_app.config["CHAT_SESSION_DAYS"] * 86400,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["CHAT_SECURE_COOKIES"],
        path="/",
    )
    return response


@bp.delete("/session")
def logout() -> Response:
    principal = require_principal()
    if principal.kind == "session":
        chat_service().logout(principal)
    response = jsonify({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.get("/me")
def me() -> dict[str, Any]:
    return chat_service().me(require_principal())


@bp.post("/tokens")
def create_token() -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(empty_ok=True)
    name = v.string(body, "name", required=False, max_length=80) or "token"
    return jsonify(chat_service().create_token(principal, name)), 201


@bp.get("/tokens")
def list_tokens() -> dict[str, Any]:
    return {"tokens": chat_service().list_tokens(require_principal())}


@bp.delete("/tokens/<int:token_id>")
def revoke_token(token_id: int) -> tuple[str, int]:
    chat_service().revoke_credential(require_principal(), token_id)
    return "", 204
