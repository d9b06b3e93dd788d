"""``/openapi.json``: the OpenAPI 3.1 document, generated from the declared endpoints.

Schemas come from the pydantic models the routes validate with (web/schemas.py), so what the
document promises is what the code checks. Every operation lists the errors it can answer,
all in the one JSON error shape.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from web.api import MAX_ID, Endpoint
from web.schemas import ErrorOut

JSON = "application/json"
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

# Routes outside /api that are plain Starlette endpoints, described by hand.
_SERVICE_PATHS: dict[str, Any] = {
    "/health": {"get": {
        "operationId": "health", "summary": "Liveness: the process serves HTTP", "tags": ["ops"],
        "responses": {"200": {"description": "alive", "content": {JSON: {"schema": {
            "type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"],
        }}}}},
    }},
    "/ready": {"get": {
        "operationId": "ready", "summary": "Readiness: every database pool answers",
        "tags": ["ops"],
        "responses": {
            "200": {"description": "ready", "content": {JSON: {"schema": {"type": "object"}}}},
            "503": {"description": "not ready", "headers": RETRY_AFTER,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}},
        },
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["ops"],
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["ops"],
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {JSON: {"schema": {"type": "object"}}}}},
    }},
    "/docs": {"get": {
        "operationId": "docs", "summary": "API documentation in the browser", "tags": ["ops"],
        "responses": {"200": {"description": "HTML page",
                              "content": {"text/html": {"schema": {"type": "string"}}}}},
    }},
    "/docs/app.js": {"get": {
        "operationId": "docs_script", "summary": "The script of /docs", "tags": ["ops"],
        "responses": {"200": {"description": "JavaScript",
                              "content": {"text/javascript": {"schema": {"type": "string"}}}}},
    }},
    "/sandbox/checkout": {
        "get": {
            "operationId": "sandbox_page", "tags": ["payments"],
            "summary": "The sandbox provider's hosted pay / decline page (development only)",
            "parameters": [{"name": "token", "in": "query", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "400": {"description": "a forged or expired checkout link",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "404": {"description": "the sandbox provider is not enabled",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
            },
        },
        "post": {
            "operationId": "sandbox_choice", "tags": ["payments"],
            "summary": "The buyer's choice on the sandbox page: notifies, then 303 back",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["token", "choice"],
                "properties": {"token": {"type": "string"},
                               "choice": {"enum": ["pay", "decline", "cancel"]}}}}}},
            "responses": {
                "303": {"description": "back to the order's page"},
                "400": {"description": "a forged or expired checkout link",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "404": {"description": "the sandbox provider is not enabled",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "503": {"description": "the payment could not be recorded; try again",
                        "content": {"text/html": {"schema": {"type": "string"}}}},
            },
        },
    },
}  # fmt: skip


def _version() -> str:
    try:
        return importlib.metadata.version("streamd")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch of Optional."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    kept = [b for b in branches if b.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, convertor in endpoint.path_params:
        kind: dict[str, Any] = {"type": "string"}
        if convertor == "int":
            kind = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        params.append({"name": name, "in": "path", "required": True, "schema": kind})
    for header in endpoint.headers:
        params.append({"name": header.name, "in": "header", "required": False,
                       "schema": {"type": "string", "enum": list(header.values)},
                       "description": header.description})  # fmt: skip
    if endpoint.query is not None:
        schema: dict[str, Any] = endpoint.query.model_json_schema(mode="validation")
        required = set(schema.get("required", []))
        properties: dict[str, dict[str, Any]] = schema["properties"]
        for name, original in properties.items():
            prop = dict(original)
            description = prop.pop("description", None)
            prop.pop("title", None)
            param = {"name": name, "in": "query", "required": name in required,
                     "schema": _without_null(prop)}  # fmt: skip
            if description:
                param["description"] = description
            params.append(param)
    return params


def build_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for e in endpoints:
        if e.body is not None:
            wanted.append((e.body, "validation"))
        if e.response is not None:
            wanted.append((e.response, "serialization"))
    refs, top = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, Any] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "operationId": e.operation_id, "summary": e.summary, "tags": [e.tag],
        }  # fmt: skip
        if params := _parameters(e):
            op["parameters"] = params
        if e.body is not None:
            required = bool(e.body.model_json_schema().get("required"))
            op["requestBody"] = {
                "required": required,
                "content": {JSON: {"schema": refs[(e.body, "validation")]}},
            }
        if e.raw_body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {e.raw_body: {"schema": {"type": "string", "format": "binary"}}},
            }
        responses: dict[str, Any] = {}
        if e.stream is not None:
            responses["200"] = {
                "description": "OK (a stream)",
                "content": {e.stream: {"schema": {"type": "string"}}},
            }
        elif e.response is not None:
            responses[str(e.status)] = {
                "description": HTTPStatus(e.status).phrase,
                "content": {JSON: {"schema": refs[(e.response, "serialization")]}},
            }
        else:
            responses["204"] = {"description": "No Content"}
        errors = set(e.errors)
        if e.body is not None:
            errors |= {413, 415, 422}
        if e.query is not None:
            errors.add(422)
        if e.auth != "public":
            errors.add(401)
            op["security"] = [{"bearer": []}]
        if e.auth in ("creator", "admin"):
            errors.add(403)
        if e.path_params:
            errors.add(404)
        for status in sorted(errors):
            responses[str(status)] = _error(status)
        op["responses"] = responses
        path = re.sub(r"{(\w+):\w+}", r"{\1}", e.path)
        paths.setdefault(path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamd API",
            "version": _version(),
            "description": "Accounts, roles and lives. Authenticate with "
            "`Authorization: Bearer <access_token>` from /api/auth/login. Errors are always "
            '`{"error": {"code", "message", "details"?}}`.',
        },
        "paths": {**paths, **_SERVICE_PATHS},
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    document: dict[str, Any] = request.app.state.openapi
    return JSONResponse(document)
