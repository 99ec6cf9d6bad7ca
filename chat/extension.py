"""The per-app services, kept in app.extensions["chat"]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from .broker import Broker
    from .hub import Hub
    from .service import ChatService
    from .store import Store


@dataclass
class ChatExtension:
    store: Store
    broker: Broker
    hub: Hub
    service: ChatService


def chat_extension() -> ChatExtension:
    return current_app.extensions["chat"]  # type: ignore[no-any-return]


def chat_service() -> ChatService:
    return chat_extension().service
