"""Typed application state."""

from __future__ import annotations

from aiohttp import web

from autodep.service import Service

SERVICE: web.AppKey[Service] = web.AppKey("autodep_service")
