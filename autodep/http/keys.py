"""Typed application state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from autodep.service import Service

SERVICE: web.AppKey[Service] = web.AppKey("autodep_service")
