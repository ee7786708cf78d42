"""The gRPC server: `grpc.aio` on the running event loop, beside the aiohttp site."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from autodep.bearer import given_token, matches
from autodep.grpc.messages import SERVICE
from autodep.grpc.service import InferenceService
from autodep.service import Service

log = logging.getLogger(__name__)

# The health RPCs stay open, as /v2/health/* does over HTTP.
PUBLIC = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady"})


class GrpcServer:
    """Serves `inference.GRPCInferenceService` for a started `Service`.

    With `service.config.auth_token` set, every RPC but the health ones needs
    the metadata `authorization: Bearer <token>` (else UNAUTHENTICATED).
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        token = service.config.auth_token
        self._server = grpc.aio.server(
            interceptors=[] if token is None else [BearerAuth(token.get_secret_value())],
            options=[("grpc.max_receive_message_length", service.config.max_body)],
        )
        self._server.add_generic_rpc_handlers(InferenceService(service).handlers())
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port); returns the port. OSError if it cannot."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound: int = self._server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises this when the address cannot be bound
            raise OSError(f"cannot listen on {address} for gRPC: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen on {address} for gRPC")
        await self._server.start()
        self.port = bound
        return bound

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new RPCs; running ones get `grace` seconds, then are cancelled."""
        await self._server.stop(grace)


class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no types
    def __init__(self, token: str) -> None:
        self._expected = token.encode()
        self._refuse = grpc.unary_unary_rpc_method_handler(_unauthenticated)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method in PUBLIC or self._authorized(handler_call_details):
            return await continuation(handler_call_details)
        return self._refuse

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = given_token(value)
                return given is not None and matches(given, self._expected)
        return False


async def _unauthenticated(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "this server needs the metadata `authorization: Bearer <token>` (its --auth-token)",
    )
