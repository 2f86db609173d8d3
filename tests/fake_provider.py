"""A local fake of the Anthropic and OpenAI HTTP APIs.

Adapter tests point the real SDK clients at it, so they check the actual wire format both
ways: each test queues canned replies and then asserts on the requests the SDK really sent.

    with FakeProvider() as fake:
        fake.reply(anthropic_message("hi"))
        ...  # AnthropicModel("m", base_url=fake.url, api_key="k")
        assert fake.requests[0].body["max_tokens"] == 1024
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTES = ("/v1/messages", "/v1/chat/completions")


@dataclass
class Reply:
    """One canned answer; ``hang`` never answers, so the client runs into its timeout."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Received:
    """One request as the fake saw it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeProvider:
    """A scriptable HTTP server on 127.0.0.1, serving ``ROUTES`` from a queue of replies."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL without a path: Anthropic's SDK adds ``/v1/...``; OpenAI's needs ``/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Queue a JSON reply (a ``str`` body is sent as-is)."""
        with self._lock:
            self._replies.append(Reply(status, body, headers or {}))

    def hang(self) -> None:
        """Queue a request that is held without an answer until the fake stops."""
        with self._lock:
            self._replies.append(Reply(hang=True))

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _take(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if received.method != "POST" or received.path not in ROUTES:
                return Reply(404, anthropic_error(f"fake provider serves no {received.path}"))
            if not self._replies:
                # 418, not 5xx: a forgotten reply must fail loudly, not look transient.
                return Reply(418, anthropic_error("fake provider: no reply queued"))
            return self._replies.popleft()


def _handler_for(fake: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            reply = fake._take(
                Received(
                    method=self.command,
                    path=self.path.split("?")[0],
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            if reply.hang:
                fake._release.wait()
                return
            data = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            payload = data.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test); nothing left to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


# --- Anthropic Messages wire format ------------------------------------------------------


def anthropic_message(
    *content: str | dict[str, Any],
    stop_reason: str = "end_turn",
    model: str = "claude-test-20260101",
    input_tokens: int = 11,
    output_tokens: int = 7,
) -> dict[str, Any]:
    """A Messages API reply; ``str`` items become text blocks, dicts are sent as blocks."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": c} if isinstance(c, str) else c for c in content],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_tool_use(name: str, arguments: dict[str, Any], id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": arguments}


def anthropic_error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """An error body; the OpenAI SDK reads this shape too (it unwraps ``error``)."""
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- OpenAI chat-completions wire format -------------------------------------------------


def openai_completion(
    content: str | None = "",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    model: str = "gpt-test-2026-01-01",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A chat-completions reply; ``usage=None`` gives the default counts, ``{}`` drops it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    reply: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is None:
        usage = {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
    if usage:
        reply["usage"] = usage
    return reply


def openai_tool_call(name: str, arguments: str, id: str = "call_1") -> dict[str, Any]:
    """A tool call; ``arguments`` is the raw JSON string, as the API sends it."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def openai_error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
