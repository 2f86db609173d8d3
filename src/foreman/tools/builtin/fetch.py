"""``fetch``: GET one http(s) URL and give the model its text (risk medium).

Medium, not low: the model picks the URL, and a URL can carry out whatever the model has
read (a file's contents in a query string), so a person approves each fetch unless the
run auto-approves medium risk. Only ``http`` and ``https``; redirects are followed (at
most 5), each hop checked like the first. Hosts that resolve to a loopback, private,
link-local or reserved address (this machine, the local network, cloud metadata
endpoints) are refused unless ``allow_private`` is set. The body is read up to
``max_bytes`` and for at most ``timeout`` seconds; binary content is not shown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx2

from foreman.errors import ToolError
from foreman.tools.base import RiskLevel, Tool
from foreman.tools.function import FunctionTool

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "+json")


class FetchTool:
    """Fetches URLs within limits of time and size."""

    def __init__(
        self, *, timeout: float = 20.0, max_bytes: int = 1_000_000, allow_private: bool = False
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_private = allow_private

    async def fetch(self, url: str) -> str:
        """GET an http or https URL and return its status, content type and text."""
        await self._check(httpx2.URL(url) if _parses(url) else None, url)
        try:
            async with (
                httpx2.AsyncClient(
                    timeout=self.timeout,
                    follow_redirects=True,
                    max_redirects=5,
                    event_hooks={"request": [self._check_hop]},
                ) as client,
                asyncio.timeout(self.timeout),
                client.stream("GET", url) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        break
        except TimeoutError:
            raise ToolError(f"fetching {url} took longer than {self.timeout:g} s.") from None
        except httpx2.TooManyRedirects:
            raise ToolError(f"{url} redirects more than 5 times.") from None
        except httpx2.HTTPError as exc:
            raise ToolError(f"cannot fetch {url}: {exc}") from None
        kind = response.headers.get("content-type", "")
        head = f"HTTP {response.status_code} {kind}".rstrip()
        if kind and not any(marker in kind for marker in TEXT_TYPES):
            return f"{head}\n[binary content, not shown]"
        cut = len(body) > self.max_bytes
        text = bytes(body[: self.max_bytes]).decode(response.encoding or "utf-8", "replace")
        if cut:
            text += f"\n[cut at {self.max_bytes} bytes]"
        return f"{head}\n\n{text}"

    async def _check_hop(self, request: httpx2.Request) -> None:
        await self._check(request.url, str(request.url))

    async def _check(self, url: httpx2.URL | None, given: str) -> None:
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ToolError(f"{given!r} is not an http or https URL.")
        if self.allow_private:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                url.host, url.port or 443, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise ToolError(f"cannot resolve {url.host}: {exc.strerror or exc}.") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not address.is_global:
                raise ToolError(
                    f"{url.host} is a local or private address ({address}); fetch only reaches "
                    "public hosts."
                )

    def tool(self) -> Tool:
        # a GET changes nothing on a well-behaved server: repeating one after a crash is safe
        tool = FunctionTool(self.fetch, name="fetch", risk=RiskLevel.medium, idempotent=True)
        tool.timeout = self.timeout + 5  # its own limit answers first, with the URL
        return tool


def _parses(url: str) -> bool:
    try:
        httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        return False
    return True
