"""API errors as exceptions, so helpers deep in a view can refuse with the DESIGN.md error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import jsonify
from werkzeug.wrappers import Response

from gateway.runs import RunRejected


class ApiError(Exception):
    """A refusal with the JSON error shape: ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, field: str, message: str) -> ApiError:
        """A validation error naming one field in ``details``."""
        return cls(400, "validation_error", f"{field}: {message}", {field: message})

    @classmethod
    def from_rejection(cls, exc: RunRejected) -> ApiError:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if exc.status == 429 and not headers:
            headers["Retry-After"] = "60"
        return cls(exc.status, exc.code, exc.message, exc.details, headers)


def api_error_response(exc: ApiError) -> Response:
    response = jsonify(error={"code": exc.code, "message": exc.message, "details": exc.details})
    response.status_code = exc.status
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response
