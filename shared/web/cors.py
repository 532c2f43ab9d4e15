"""CORS for browser viewers (OHIF): preflight answers and response headers per allowed origin."""

from __future__ import annotations

from flask import Request, Response

from shared.config import Settings

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Accept, Storage-Class, Range, X-Requested-With"
EXPOSED_HEADERS = "Content-Type, Content-Length, Content-Range, Content-Location, Location"
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(request: Request, settings: Settings) -> str | None:
    """The Origin to echo back, or None when CORS is off or the origin is not listed."""
    origin = request.headers.get("Origin")
    if not origin or not settings.cors_origins:
        return None
    if "*" in settings.cors_origins or origin.rstrip("/") in settings.cors_origins:
        return origin
    return None


def is_preflight(request: Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def preflight_response(request: Request, settings: Settings) -> Response:
    """204 with the allowed methods and headers; without CORS headers for unknown origins."""
    response = Response(status=204)
    response.headers["Allow"] = ALLOWED_METHODS
    origin = allowed_origin(request, settings)
    if origin is not None:
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def decorate(response: Response, request: Request, settings: Settings) -> Response:
    origin = allowed_origin(request, settings)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"
        if settings.auth_token is not None:
            response.headers["Access-Control-Allow-Credentials"] = "true"
    return response
