"""A local fake of the Anthropic and OpenAI HTTP APIs.

Adapter tests point the real SDK clients at it, so they check the actual wire format both
ways: each test queues canned replies and then asserts on the requests the SDK really sent.

    with FakeProvider() as fake:
        fake.reply(anthropic_message("hi"))
        ...  # AnthropicModel("m", base_url=fake.url, api_key="k")
        assert fake.requests[0].body["max_tokens"] == 1024

Instead of a queue, ``respond_with(fn)`` answers each request by what it asks (concurrent
tasks arrive in any order). The fake also bills like a provider: every 2xx answer that
reports usage is one ``Charge`` in ``fake.bill``, priced by ``genai-prices`` from the raw
body it sent (never from foreman's own reading of it), so tests compare foreman's books
with what the provider charged. ``Meter`` hands out distinct usages, cache tokens included,
so a call dropped, counted twice or priced at the wrong model changes the totals.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import genai_prices

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


@dataclass
class Charge:
    """One answered request as the provider bills it: ``usage`` is genai-prices' reading of
    the body sent (its ``input_tokens`` include cached prompt tokens)."""

    request: Received
    model: str
    usage: genai_prices.Usage

    @property
    def provider(self) -> str:
        return "anthropic" if self.request.path == "/v1/messages" else "openai"

    def price(self, rates: Sequence[float] | None = None) -> Decimal:
        """Dollars at genai-prices' list price for the model that answered, or at ``rates``
        (input, output, cache read, cache write per million tokens) for a price of one's own."""
        if rates is None:
            return genai_prices.calc_price(
                self.usage, self.model, provider_id=self.provider
            ).total_price
        u = self.usage
        read, write = u.cache_read_tokens or 0, u.cache_write_tokens or 0
        counts = [(u.input_tokens or 0) - read - write, u.output_tokens or 0, read, write]
        dollars = sum(n * Decimal(str(r)) for n, r in zip(counts, rates, strict=True))
        return Decimal(dollars) / 1_000_000


Responder = Callable[[Received], Reply]


def billed_usage(path: str, body: dict[str, Any]) -> genai_prices.Usage:
    """The tokens a reply body reports, read as each provider documents them (and as
    genai-prices counts them: input includes the cached prompt tokens)."""
    usage = body["usage"]
    if path == "/v1/messages":
        read = usage.get("cache_read_input_tokens") or 0
        write = usage.get("cache_creation_input_tokens") or 0
        return genai_prices.Usage(
            input_tokens=usage["input_tokens"] + read + write,
            output_tokens=usage["output_tokens"],
            cache_read_tokens=read,
            cache_write_tokens=write,
        )
    details = usage.get("prompt_tokens_details") or {}
    return genai_prices.Usage(
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
        cache_read_tokens=details.get("cached_tokens") or 0,
    )


class FakeProvider:
    """A scriptable HTTP server on 127.0.0.1, serving ``ROUTES`` from a queue of replies,
    else from ``respond_with``'s function; ``bill`` lists every answer it charged for."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.bill: list[Charge] = []
        self._responder: Responder | None = None
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

    def respond_with(self, responder: Responder | None) -> None:
        """Answer requests the queue does not with ``responder(request)`` (called under the
        fake's lock, one request at a time, so it may keep state)."""
        with self._lock:
            self._responder = responder

    def charged(self, request: Received) -> Charge | None:
        """What the fake billed for ``request`` (None: refused or never answered)."""
        with self._lock:
            return next((c for c in self.bill if c.request is request), None)

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
            if self._replies:
                reply = self._replies.popleft()
            elif self._responder is not None:
                reply = self._responder(received)
            else:
                # 418, not 5xx: a forgotten reply must fail loudly, not look transient.
                return Reply(418, anthropic_error("fake provider: no reply queued"))
            self._charge(received, reply)
            return reply

    def _charge(self, received: Received, reply: Reply) -> None:
        """Bill an answer the way its provider would: any 2xx body that reports usage."""
        body = reply.body
        if reply.hang or not 200 <= reply.status < 300 or not isinstance(body, dict):
            return
        if "usage" not in body:
            return
        self.bill.append(Charge(received, body["model"], billed_usage(received.path, body)))


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
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A Messages API reply; ``str`` items become text blocks, dicts are sent as blocks.
    ``usage`` replaces the whole usage object (cache counts included)."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": c} if isinstance(c, str) else c for c in content],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": input_tokens, "output_tokens": output_tokens},
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


# --- answering like a provider -----------------------------------------------------------


class Meter:
    """Hands out a distinct usage for each answer, cache tokens included: no two answers
    share any count, so a call dropped, doubled or swapped with another shows in a total."""

    def __init__(self) -> None:
        self.answers = 0

    def _next(self) -> tuple[int, int, int, int]:
        self.answers += 1
        n = self.answers
        return 1000 + 37 * n, 40 + 11 * n, 200 + 13 * n, 50 + 7 * n

    def anthropic(self) -> dict[str, int]:
        fresh, out, read, write = self._next()
        return {
            "input_tokens": fresh,
            "output_tokens": out,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }

    def openai(self) -> dict[str, Any]:
        fresh, out, read, _ = self._next()
        return {
            "prompt_tokens": fresh + read,
            "completion_tokens": out,
            "total_tokens": fresh + read + out,
            "prompt_tokens_details": {"cached_tokens": read},
        }


def answer(
    received: Received, content: str | dict[str, Any], meter: Meter, model: str | None = None
) -> Reply:
    """A 200 answer to ``received`` in its provider's wire format, from ``model`` (else the
    model it asked), with the meter's next usage. A dict is a structured answer (Anthropic:
    the forced ``respond`` tool call; OpenAI: JSON text); a str is plain text either way."""
    model = model or received.body["model"]
    if received.path == "/v1/messages":
        if isinstance(content, dict):
            block: str | dict[str, Any] = anthropic_tool_use("respond", content)
            stop = "tool_use"
        else:
            block, stop = content, "end_turn"
        body = anthropic_message(block, stop_reason=stop, model=model, usage=meter.anthropic())
        return Reply(body=body)
    text = json.dumps(content) if isinstance(content, dict) else content
    return Reply(body=openai_completion(text, model=model, usage=meter.openai()))


def refuse(status: int, message: str = "refused") -> Reply:
    """An error reply both SDKs read (429: rate limit, 5xx: server error); never billed."""
    kind = "rate_limit_error" if status == 429 else "api_error"
    return Reply(status, anthropic_error(message, kind), {"retry-after": "0"})


# --- foreman's requests, recognised on the wire -------------------------------------------

HANG = "hang"

#: One scripted step: an HTTP status to refuse with, ``HANG``, an answer (str or dict), or
#: a ``Reply`` sent as it is.
Step = int | str | dict[str, Any] | Reply


def request_kind(received: Received) -> tuple[str, str]:
    """``("plan"|"synthesis", "")`` or ``("task"|"review", instructions)`` of a request."""
    from foreman.engine.prompts import REVIEW_SUFFIX, SYNTHESIS_SYSTEM

    body = received.body
    messages = list(body["messages"])
    if received.path == "/v1/messages":
        system = body.get("system") or ""
        tools = {tool["name"]: tool for tool in body.get("tools", [])}
        schema = tools.get("respond", {}).get("input_schema") or {}
    else:
        system = messages.pop(0)["content"] if messages[0]["role"] == "system" else ""
        schema = body.get("response_format", {}).get("json_schema", {}).get("schema") or {}
    if "tasks" in schema.get("properties", {}):
        return "plan", ""
    if system == SYNTHESIS_SYSTEM:
        return "synthesis", ""
    instructions = json.loads(messages[0]["content"])["instructions"]
    kind = "review" if system.endswith(REVIEW_SUFFIX) else "task"
    return kind, instructions.split(" A reviewer rejected", 1)[0]


class WireScript:
    """A responder for ``respond_with`` that plays foreman's planner, workers, reviewer and
    synthesiser, on either provider: each kind of request (a task by its instructions)
    takes its scripted steps in turn, the last one repeating. Unscripted tasks answer
    ``out:<instructions>``, reviews approve, synthesis answers ``FINAL``."""

    def __init__(
        self,
        *,
        plan: list[Step] | None = None,
        tasks: dict[str, list[Step]] | None = None,
        reviews: dict[str, list[Step]] | None = None,
        synthesis: list[Step] | None = None,
        meter: Meter | None = None,
        answered_as: dict[str, str] | None = None,
    ) -> None:
        #: Model ids answered under another id (a dated snapshot, as providers do).
        self.answered_as = answered_as or {}
        self.steps: dict[str, list[Step]] = {"plan": plan or [], "synthesis": synthesis or []}
        self.steps |= {f"task:{k}": v for k, v in (tasks or {}).items()}
        self.steps |= {f"review:{k}": v for k, v in (reviews or {}).items()}
        self.meter = meter or Meter()
        self.seen: dict[str, int] = {}
        self._lock = threading.Lock()  # one script may serve two fakes (two providers)

    def __call__(self, received: Received) -> Reply:
        kind, what = request_kind(received)
        key = f"{kind}:{what}" if what else kind
        with self._lock:
            index = self.seen.get(key, 0)
            self.seen[key] = index + 1
            steps = self.steps.get(key) or [_DEFAULTS.get(kind) or f"out:{what}"]
            step = steps[min(index, len(steps) - 1)]
            if isinstance(step, Reply):
                return step
            if step == HANG:
                return Reply(hang=True)
            if isinstance(step, int):
                return refuse(step, f"scripted {step} for {key}")
            return answer(received, step, self.meter, self.answered_as.get(received.body["model"]))


_DEFAULTS: dict[str, Step] = {"review": {"approved": True, "reasons": []}, "synthesis": "FINAL"}
