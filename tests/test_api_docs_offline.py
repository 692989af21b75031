"""`/docs` (Swagger UI 5) of a real `leadscore serve` process, opened in Debian's headless
Chromium with every request that leaves 127.0.0.1 blocked: the page renders the API from assets
the service itself serves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.service_helpers import MODEL, Server

CHROMIUM = Path("/usr/bin/chromium")
#: the summary of POST /v1/batch, as the OpenAPI description gives it
BATCH_SUMMARY = "A batch of Segment messages (the clients' default)"
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docs")
    model = tmp / "leadscore.yaml"
    model.write_text(MODEL)
    s = Server(f"sqlite:///{tmp / 'leadscore.db'}", model, tmp / "server.log").start()
    try:
        yield s
    finally:
        s.stop()


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_load_their_assets_from_the_service(server: Server) -> None:
    html = httpx.get(server.base + "/docs", timeout=10)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    urls = _assets(html.text)
    assert {u.rsplit("/", 1)[-1] for u in urls} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon.png",
    }
    for url in urls:
        assert url.startswith("/docs/assets/"), url  # on the service, not a CDN
        resp = httpx.get(server.base + url, timeout=10)
        assert resp.status_code == 200, url
        assert resp.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), (
            url,
            resp.headers["content-type"],
        )
        assert len(resp.content) > 1000, url
    assert "fonts.googleapis.com" not in html.text


def test_swagger_ui_is_version_5(server: Server) -> None:
    """Swagger UI 4 cannot read the OpenAPI 3.1 description FastAPI writes."""
    assert httpx.get(server.base + "/openapi.json", timeout=10).json()["openapi"].startswith("3.1")
    bundle = httpx.get(server.base + "/docs/assets/swagger-ui-bundle.js", timeout=10).text
    versions = set(re.findall(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle))
    assert versions == {"5"}, versions


@pytest.mark.parametrize("path", ["/docs/assets/nothing-here.js", "/redoc"])
def test_a_missing_asset_and_redoc_are_404s_in_the_error_shape(server: Server, path: str) -> None:
    """No ReDoc page: it would load its logo from its maker's CDN on every view."""
    resp = httpx.get(server.base + path, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_docs_render_offline_in_headless_chromium(server: Server) -> None:
    from playwright.sync_api import Route, sync_playwright

    requested: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []

    def only_this_machine(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_this_machine)
            tab = context.new_page()
            tab.on("request", lambda r: requested.append(r.url))
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.goto(server.base + "/docs")
            # the operations, drawn from /openapi.json by the page's script
            operation = tab.locator(".opblock-summary-description", has_text=BATCH_SUMMARY)
            operation.wait_for(state="visible", timeout=30_000)
            assert tab.title() == "leadscore - Swagger UI"
            assert tab.locator("h1.title", has_text="leadscore").is_visible()
            # the version badge Swagger UI shows for the description it read
            assert tab.locator(".version-stamp", has_text="OAS 3.1").is_visible()
            paths = tab.locator(".opblock-summary-path").all_inner_texts()
            assert "/v1/batch" in paths and "/api/leads/{lead_id}" in paths, paths
            body = tab.locator("body").inner_text()
            assert "Unable to render this definition" not in body
            # an operation opens and shows its responses, the error shape among them
            operation.click()
            tab.locator(".opblock.is-open .responses-table").first.wait_for(state="visible")
            assert tab.locator(".opblock.is-open .response-col_status", has_text="401").count()
        finally:
            browser.close()
    assert blocked == [], blocked
    assert requested and all(urlsplit(u).hostname == "127.0.0.1" for u in requested), requested
    assert server.base + "/openapi.json" in requested
    assert not errors, errors
