"""The gateway's HTTP side serves the web client: the page and the few files
it loads, with strict headers, and nothing else."""
from __future__ import annotations

import re

from aiohttp.test_utils import TestClient, TestServer

from services.gateway.http import WEB_DIR, build_http_app


async def client(serving: bool = True) -> TestClient:
    test_client = TestClient(TestServer(build_http_app(lambda: serving)))
    await test_client.start_server()
    return test_client


async def test_the_page_and_its_files_are_served_with_strict_headers():
    http = await client()
    try:
        for path, content_type, marker in (
                ("/", "text/html", '<script src="app.js"'),
                ("/app.js", "text/javascript", "window.parley"),
                ("/pow-worker.js", "text/javascript", "crypto.subtle"),
                ("/style.css", "text/css", ":root")):
            reply = await http.get(path)
            assert reply.status == 200, path
            assert reply.content_type == content_type and reply.charset == "utf-8", path
            assert reply.headers["Cache-Control"] == "no-cache"
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            policy = reply.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy and "script-src 'self'" in policy
            assert "connect-src 'self' ws: wss:" in policy
            assert "media-src 'self' blob: mediastream:" in policy
            assert "worker-src 'self'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
            assert marker in await reply.text(), path
        head = await http.head("/")
        assert head.status == 200
    finally:
        await http.close()


async def test_nothing_else_is_served_and_health_is_unchanged():
    http = await client(serving=False)
    try:
        for path in ("/nope.js", "/web/app.js", "/../http.py", "/%2e%2e/http.py", "/static/../http.py"):
            assert (await http.get(path)).status == 404, path
        health = await http.get("/healthz")
        assert health.status == 503 and await health.text() == "not serving\n"
    finally:
        await http.close()


def test_the_page_has_no_inline_script_or_handlers():
    """The CSP forbids inline script: the page must work without it."""
    html = (WEB_DIR / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        assert tag.strip() == ""
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert 'style="' not in html  # style-src 'self' forbids inline styles too
