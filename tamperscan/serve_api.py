"""HTTP surface of the endpoint (FastAPI): routes, API-key check, request bodies, errors.

Routes: ``POST /v1/scan`` (auth), ``GET /v1/models`` (auth), ``GET /readyz`` (auth),
``GET /healthz`` (open: liveness only). ``/docs`` and ``/openapi.json`` are open by default:
they describe the API, hold no data, and a browser cannot attach the key to them;
``public_docs: false`` removes them.

Every error is JSON ``{"error": code, "detail": reason}``; unexpected failures answer 500 with
a reference that is logged with the details (never a stack trace to the client).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

import tamperscan
from tamperscan.serve_response import ErrorOut, ScanFailure, ScanResult, internal_failure

if TYPE_CHECKING:
    from tamperscan.serve_service import ScanService

JSON_BODY_LIMIT = 64 * 1024
UPLOAD_FIELD = "file"

_BINARY = {"schema": {"type": "string", "format": "binary"}}
SCAN_BODY_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": [UPLOAD_FIELD],
        "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}}}},
    "application/octet-stream": _BINARY,
    "image/*": _BINARY,
    "application/json": {"schema": {
        "type": "object", "required": ["uri"],
        "properties": {"uri": {"type": "string", "example": "s3://archive/photos/0001.jpg",
                               "description": "only buckets in allowed_buckets"}}}},
}}}
ERROR_RESPONSES: dict = {
    status: {"model": ErrorOut, "description": what} for status, what in {
        401: "missing or wrong API key", 403: "bucket not allowed / URI scanning disabled",
        404: "object not found", 408: "request body not received in time",
        413: "body, file or image dimensions over the limits",
        415: "not an image, or a format outside the allowlist",
        422: "corrupt image or malformed request", 500: "internal error (with a reference)",
        502: "object storage failed", 503: "overloaded or not ready (see Retry-After)",
    }.items()
}


# Module level: with postponed annotations FastAPI resolves these names from module globals.
ApiKeyHeader = Annotated[str | None, Security(APIKeyHeader(name="X-API-Key", auto_error=False))]
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))]
HeatmapFlag = Annotated[bool, Query(description="add a heatmap overlay PNG")]


class ScanURI(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str


def check_uri(uri: str, allowed_buckets: list[str]) -> None:
    """Only ``s3://<allowed bucket>/<key>``: never a local path, never another bucket."""
    if not allowed_buckets:
        raise ScanFailure(403, "forbidden", "scanning by URI is disabled on this service")
    if not uri.startswith("s3://"):
        raise ScanFailure(422, "bad_uri", "only s3://bucket/key URIs are accepted")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if bucket not in allowed_buckets:
        raise ScanFailure(403, "forbidden", f"bucket {bucket!r} is not allowed")
    if not key or any(part in ("", ".", "..") for part in key.split("/")) or any(
            ord(c) < 32 for c in key):
        raise ScanFailure(422, "bad_uri", "malformed object key")


def _too_large(limit: int) -> ScanFailure:
    return ScanFailure(413, "too_large", f"request body exceeds the {limit}-byte limit")


def capped(request: Request, limit: int, timeout_s: float | None = None) -> Request:
    """The same request whose body stream fails with 413 once it passes ``limit`` bytes:
    the check happens while reading, so a chunked upload without Content-Length is cut off
    too and nothing over the limit is ever buffered. With ``timeout_s``, it fails with 408
    unless the whole body has arrived within that many seconds: a client trickling bytes
    cannot hold a replica's request slot for ever."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    async def receive() -> Message:
        nonlocal received
        if deadline is None:
            message = await request.receive()
        else:
            try:
                message = await asyncio.wait_for(request.receive(), deadline - time.monotonic())
            except TimeoutError as exc:
                raise ScanFailure(408, "timeout", f"the request body did not arrive within "
                                  f"{timeout_s:g} s", {"Connection": "close"}) from exc
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return Request(request.scope, receive)


async def read_upload(request: Request, limit: int,
                      timeout_s: float | None = None) -> tuple[bytes, str]:
    """(file bytes, file name) of a multipart upload's ``file`` field. The name is only
    echoed back as ``source``: it never names a file here (uploads are spooled to anonymous
    temporary files)."""
    try:
        form = await capped(request, limit, timeout_s).form(max_files=1, max_fields=8)
    except StarletteHTTPException as exc:  # malformed multipart, too many files or fields
        raise ScanFailure(422, "bad_request", f"malformed multipart body: {exc.detail}") from exc
    try:
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise ScanFailure(422, "bad_request",
                              f"multipart body needs a file field named {UPLOAD_FIELD!r}")
        return await upload.read(), upload.filename or "upload"
    finally:
        await form.close()


def build_api(service: ScanService) -> FastAPI:
    settings = service.settings
    docs = settings.public_docs
    app = FastAPI(
        title="tamperscan", version=tamperscan.__version__,
        description="Image tampering detection and localisation (the bulk scan's graph, "
                    "one image per request). Send the key as `X-API-Key` or "
                    "`Authorization: Bearer`.",
        docs_url="/docs" if docs else None, redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )

    async def require_key(x_api_key: ApiKeyHeader, credentials: BearerToken) -> None:
        key = x_api_key or (credentials.credentials if credentials else None)
        if not service.key_ok(key):
            raise ScanFailure(401, "unauthorized", "missing or invalid API key",
                              {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ScanFailure)
    async def on_failure(_: Request, exc: ScanFailure) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.message}, exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """Bad query parameters get the documented error shape, not FastAPI's list."""
        reasons = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                            for e in exc.errors())
        return JSONResponse({"error": "bad_request", "detail": reasons or "invalid request"},
                            422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http", "detail": str(exc.detail)}, exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def guarded(awaitable):
        """Unexpected exceptions become a logged 500 with a reference, never a traceback."""
        try:
            return await awaitable
        except ScanFailure:
            raise
        except Exception as exc:
            raise internal_failure(traceback.format_exc()) from exc

    authed = [Depends(require_key)]

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        """Liveness: the ingress process answers (no auth, no model calls)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], dependencies=authed, responses=ERROR_RESPONSES)
    async def readyz() -> dict:
        """Readiness: every model stage answers."""
        stages = await guarded(service.stage_info(timeout_s=5.0))
        return {"status": "ready", "stages": [s["stage"] for s in stages]}

    @app.get("/v1/models", tags=["scan"], dependencies=authed, responses=ERROR_RESPONSES)
    async def models() -> dict:
        """Model configs, weight versions, batching, thresholds and limits."""
        return await guarded(service.models())

    @app.post("/v1/scan", tags=["scan"], dependencies=authed, response_model=ScanResult,
              responses=ERROR_RESPONSES, openapi_extra=SCAN_BODY_DOC)
    async def scan(request: Request, heatmap: HeatmapFlag = False) -> dict:
        """Analyse one image: multipart upload (field `file`), the raw image as the body, or
        JSON `{"uri": "s3://bucket/key"}` for an allowed bucket. The mask RLE is COCO
        uncompressed RLE in column-major order (see the `MaskRLE` schema)."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body_timeout = settings.body_timeout_s
        if content_type == "multipart/form-data":
            data, name = await read_upload(request, settings.body_limit, body_timeout)
            return await guarded(service.scan_bytes(data, name, heatmap))
        if content_type == "application/json":
            body = await capped(request, JSON_BODY_LIMIT, body_timeout).body()
            try:
                uri = ScanURI.model_validate_json(body).uri
            except ValidationError as exc:
                raise ScanFailure(422, "bad_request",
                                  'JSON body must be {"uri": "s3://bucket/key"}') from exc
            check_uri(uri, settings.allowed_buckets)
            return await guarded(service.scan_uri(uri, heatmap))
        data = await capped(request, settings.body_limit, body_timeout).body()
        return await guarded(service.scan_bytes(data, "upload", heatmap))

    return app
