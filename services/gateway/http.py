"""The gateway's HTTP side: a health endpoint for load balancers that do not
speak gRPC health, and the WebSocket transport (registered by the app)."""
from __future__ import annotations

from aiohttp import web


def build_http_app(is_serving) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if is_serving():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()
