"""The HTTP server: OpenAI's ``/v1`` routes, Ollama's ``/api`` routes, and ``/health``.

Each request becomes a turn on the engine service, queued behind the window's own turns
(background priority). The conversation a client resends is compared with what the KV cache
holds (and with the few conversations the engine keeps aside), images by their pixels, so a
follow-up with the same image does not read it again. A client that goes away, or a request
past the time limit, cancels its turn.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, Response

from smolchat.api.errors import ApiError, error_body, error_response
from smolchat.api.ollama_routes import OLLAMA_PREFIX, ollama_error, ollama_router
from smolchat.api.openai_routes import openai_router
from smolchat.api.serving import ServedModel, ServerContext, ServerOptions
from smolchat.service import EngineService

__all__ = ["ServedModel", "ServerOptions", "create_app"]


def create_app(service: EngineService, model: ServedModel, options: ServerOptions = ServerOptions()) -> FastAPI:
    server = ServerContext(service, model, options)
    app = FastAPI(title="SmolChat", docs_url=None, redoc_url=None, openapi_url=None)

    def refusal(request: Request, status: int, message: str, error: ApiError | None = None) -> Response:
        if request.url.path.startswith(OLLAMA_PREFIX):
            return ollama_error(status, message)
        if error is not None:
            return error_response(error)
        return JSONResponse(error_body(status, message), status)

    @app.exception_handler(ApiError)
    async def refused(request: Request, error: ApiError) -> Response:
        return refusal(request, error.status, error.message, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return refusal(request, error.status_code, str(error.detail))

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if options.api_key is not None and request.url.path not in ("/", "/health") and request.method != "OPTIONS":
            given = request.headers.get("authorization", "")
            if not _same(given, f"Bearer {options.api_key}"):
                return refusal(request, 401, "A valid API key is needed: Authorization: Bearer KEY.")
        return await call_next(request)

    if options.cors_origins:  # added last, so outermost: preflights are answered before the key is asked
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.get("/health")
    async def health() -> Response:
        why = model.unavailable()
        if why:
            return JSONResponse(error_body(503, why), 503)
        return JSONResponse({"status": "ok"})

    @app.api_route("/", methods=["GET", "HEAD"])
    async def root() -> Response:
        return PlainTextResponse("SmolChat is running: the OpenAI API at /v1, Ollama's at /api.")

    app.include_router(openai_router(server))
    app.include_router(ollama_router(server))
    return app


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())
