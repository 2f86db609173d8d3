"""Who may use the dashboard: the token on every request (page, API, event stream), the
cookie a first visit with ?token= sets, the Host check against DNS rebinding, and the
cross-site checks on decisions; and ``foreman ui``'s refusals, one clear line each."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import foreman.web
from foreman.cli import app as cli
from foreman.store.memory import MemoryStore
from foreman.web.app import create_app
from foreman.web.security import cookie_name, is_loopback

BASE = "http://127.0.0.1:8765"
TOKEN = "s3cret-token-long-enough"
COOKIE = cookie_name(TOKEN)
DECIDE_URL = "/api/runs/r1/tasks/t1/approve"
BODY = {"inputs_sha256": "0" * 64}
runner = CliRunner()


def client(token: str | None = None, *, loopback: bool = True) -> TestClient:
    app = create_app(MemoryStore(), token=token, loopback_only=loopback)
    return TestClient(app, base_url=BASE, follow_redirects=False)


@pytest.mark.parametrize("path", ["/", "/app.js", "/api/runs", "/api/approvals", "/api/events"])
def test_without_the_token_nothing_is_served(path: str) -> None:
    refused = client(TOKEN).get(path)
    assert refused.status_code == 401
    assert "token" in refused.json()["error"]
    wrong = client(TOKEN).get(path, headers={"Authorization": "Bearer wrong-token-guess"})
    assert wrong.status_code == 401


def test_the_token_as_a_header() -> None:
    opened = client(TOKEN)
    assert opened.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).is_success
    assert opened.get("/api/runs", headers={"X-Foreman-Token": TOKEN}).is_success


def test_a_first_visit_with_the_token_sets_a_strict_cookie_and_drops_it_from_the_url() -> None:
    opened = client(TOKEN)
    first = opened.get(f"/?token={TOKEN}&x=1")
    assert first.status_code == 303
    assert first.headers["location"] == "/?x=1"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert opened.cookies[COOKIE] == TOKEN
    assert TOKEN not in COOKIE and cookie_name("another-token-as-long") != COOKIE
    assert opened.get("/api/runs").is_success  # the cookie alone, from now on
    stranger = client(TOKEN)
    stranger.cookies.set(COOKIE, "not-it-but-just-as-long")
    assert stranger.get("/").status_code == 401
    assert client(TOKEN).get("/?token=guessed-wrong-token").status_code == 401


def test_a_token_in_the_query_does_not_authorise_a_decision() -> None:
    opened = client(TOKEN)
    sent = opened.post(f"{DECIDE_URL}?token={TOKEN}", json=BODY, headers={"X-Foreman-Request": "1"})
    assert sent.status_code == 401


def test_dns_rebinding_is_refused_on_loopback() -> None:
    opened = client()
    assert opened.get("/api/runs").is_success
    assert opened.get("/api/runs", headers={"Host": "localhost:8765"}).is_success
    assert opened.get("/api/runs", headers={"Host": "[::1]:8765"}).is_success
    rebound = opened.get("/api/runs", headers={"Host": "evil.example:8765"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
    assert (
        client(TOKEN, loopback=False)
        .get("/api/runs", headers={"Host": "dash.example", "X-Foreman-Token": TOKEN})
        .is_success
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),  # no custom header: what a cross-site form sends
        ({"X-Foreman-Request": "1", "Content-Type": "text/plain"}, 415),
        ({"X-Foreman-Request": "1", "Origin": "http://evil.example"}, 403),
        ({"X-Foreman-Request": "1", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"X-Foreman-Request": "1", "Origin": BASE}, 404),  # through: no such run
        ({"X-Foreman-Request": "1"}, 404),
    ],
)
def test_decisions_refuse_cross_site_requests(headers: dict[str, str], status: int) -> None:
    opened = client()
    if headers.get("Content-Type") == "text/plain":
        sent = opened.post(DECIDE_URL, content=b'{"inputs_sha256": "0"}', headers=headers)
    else:
        sent = opened.post(DECIDE_URL, json=BODY, headers=headers)
    assert sent.status_code == status, sent.text


def test_responses_forbid_inline_script_framing_and_sniffing() -> None:
    page = client().get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "example.com", "::"]))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_ui_refuses_a_public_address_without_a_token(monkeypatch) -> None:
    monkeypatch.delenv("FOREMAN_UI_TOKEN", raising=False)
    said = one_line_error(runner.invoke(cli, ["ui", "--host", "0.0.0.0"]))
    assert "refusing to serve on 0.0.0.0 without a token" in said
    assert "FOREMAN_UI_TOKEN" in said


def test_ui_refuses_a_short_token() -> None:
    said = one_line_error(runner.invoke(cli, ["ui", "--host", "0.0.0.0", "--token", "abc"]))
    assert "too short" in said


def test_ui_without_the_extra_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "foreman.web.app", raising=False)
    result = runner.invoke(cli, ["ui"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "foreman ui needs the dashboard's extra dependencies (FastAPI, uvicorn): "
        "pip install 'foreman[ui]'"
    )


def test_the_page_never_parses_data_as_html() -> None:
    """The page's script builds elements and text nodes only: none of the calls that parse
    a string as HTML or code, and no inline script the CSP would have to allow."""
    static = Path(foreman.web.__file__).with_name("static")
    script = (static / "app.js").read_text()
    for parser in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert parser not in script, parser
    assert "new Function" not in script
    page = (static / "index.html").read_text()
    assert page.count("<script") == 1 and '<script src="/app.js" defer></script>' in page


def test_ui_says_when_the_port_is_taken(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["ui", "--port", str(port), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert f"cannot listen on 127.0.0.1:{port}" in said
    assert not (tmp_path / "x.db").exists()
    # a store that does not exist (a mistyped --db?) is served, with a note saying so
    assert f"no run store at {tmp_path / 'x.db'} yet" in said
