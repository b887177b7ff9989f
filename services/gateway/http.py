"""The gateway's HTTP side: a health endpoint for load balancers that do not
speak gRPC health, the web client's static files (`/` and the few files it
loads), and the WebSocket transport (registered by the app)."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).parent / "web"

# The only files served, by URL path: a fixed list, so nothing else under the
# package (or outside it) can ever be reached through a crafted path.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/pow-worker.js": ("pow-worker.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

# Scripts only from files of this origin (no inline script, no eval); the
# WebSocket to this origin; camera streams and blobs for <video>; the proof of
# work runs in a worker of this origin. Nothing may frame the page.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self' ws: wss:",
    "media-src 'self' blob: mediastream:",
    "img-src 'self' data: blob:",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}


def build_http_app(is_serving, web_dir: Path = WEB_DIR) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if is_serving():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    async def static(request: web.Request) -> web.Response:
        name, content_type = STATIC_FILES[request.path]
        try:
            body = (web_dir / name).read_bytes()  # a few KB; read fresh so edits show at once
        except OSError:
            raise web.HTTPNotFound(text="not found\n")
        response = web.Response(body=body, headers=SECURITY_HEADERS)
        response.content_type, _, _ = content_type.partition(";")
        response.charset = "utf-8"
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    for path in STATIC_FILES:
        app.router.add_get(path, static)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        # A crowd reconnecting at once (a gateway restart) overflows the
        # default backlog of 128, and each overflow costs a client a 1 s retry.
        site = web.TCPSite(self._runner, self._host, self._port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()
