"""``/docs``: Swagger UI 5, loaded from files the service serves itself (``DOCS_ASSETS``: the
script, style sheet and icon shipped in the fastapi-offline package), not a CDN, so the docs
work offline. There is no ``/redoc``: ReDoc always loads its logo from its maker's CDN
(docs/service.md).

The same pages as fastapi-offline's ``FastAPIOffline`` adds, added here to an app of the
project's own class (``api.App``), which that function cannot make."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

__all__ = ["DOCS_ASSETS", "add_docs"]

#: where ``/docs`` loads its script, style sheet and icon from
DOCS_ASSETS = "/docs/assets"
_STATIC = Path(fastapi_offline.__file__).parent / "static"


def add_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """``docs_url`` (Swagger UI) and its OAuth2 redirect page, and ``DOCS_ASSETS``; ``app``
    made with ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"
    app.mount(DOCS_ASSETS, StaticFiles(directory=_STATIC.as_posix()), name="static-offline-docs")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
