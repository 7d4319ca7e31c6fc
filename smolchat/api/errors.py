"""Errors as OpenAI's clients expect them: ``{"error": {"message", "type", "param", "code"}}``
with the HTTP status that says whose fault it was."""

from __future__ import annotations

from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """A request refused with ``status`` and a message written for the person calling."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {
        "error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}
    }


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.message, param=error.param, code=error.code), error.status)
