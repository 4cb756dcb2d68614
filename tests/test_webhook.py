"""Webhook notifier against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from raysight.errors import PermanentError, TransientError
from raysight.exporters.notify import WebhookNotifier, redact
from raysight.registry import notifiers

SECRET = "s3cr3t-token-value"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Hook:
    """A loopback server; the path picks the answer: /ok, /status/<code>, /slow, /redirect."""

    base: str
    requests: list[Received] = field(default_factory=list)

    def notifier(self, path: str = "/ok", **config: object) -> WebhookNotifier:
        return WebhookNotifier(WebhookNotifier.Config(url=self.base + path, **config))


@pytest.fixture(scope="module")
def server() -> Iterator[Hook]:
    hook = Hook(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.requests.append(Received(self.path, dict(self.headers.items()), body))
            if self.path.startswith("/status/"):
                self.answer(int(self.path.rsplit("/", 1)[1]), b"rejected by test server")
            elif self.path == "/slow":
                time.sleep(1.0)
                try:
                    self.answer(200)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out, as the test intends
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/ok")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.answer(200, b"ok")

        def answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    hook.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield hook
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hook(server: Hook, monkeypatch: pytest.MonkeyPatch) -> Hook:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server.requests.clear()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_posts_text_and_payload_as_json(hook: Hook) -> None:
    hook.notifier().send("Job j1 finished: COMPLETED", {"job_id": "j1", "rows": 3})

    [request] = hook.requests
    assert request.path == "/ok"
    assert json.loads(request.body) == {
        "text": "Job j1 finished: COMPLETED",
        "job_id": "j1",
        "rows": 3,
    }


def test_body_is_utf8_json(hook: Hook) -> None:
    hook.notifier().send("Zürich 東京", {})

    assert "Zürich 東京".encode() in hook.requests[0].body


def test_content_type_is_application_json(hook: Hook) -> None:
    hook.notifier().send("done", {})

    assert hook.requests[0].headers["Content-Type"] == "application/json"


def test_configured_headers_are_sent(hook: Hook) -> None:
    hook.notifier(headers={"Authorization": f"Bearer {SECRET}", "X-Team": "sales"}).send("done", {})

    headers = hook.requests[0].headers
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["X-Team"] == "sales"


def test_user_info_in_the_url_is_sent_as_basic_authorization(hook: Hook) -> None:
    url = hook.base.replace("http://", f"http://bot:{SECRET}@") + "/ok"

    WebhookNotifier(WebhookNotifier.Config(url=url)).send("done", {})

    expected = base64.b64encode(f"bot:{SECRET}".encode()).decode()
    assert hook.requests[0].headers["Authorization"] == f"Basic {expected}"


def test_the_message_is_not_replaced_by_a_payload_text_key(hook: Hook) -> None:
    hook.notifier().send("the message", {"text": "from payload"})

    assert json.loads(hook.requests[0].body)["text"] == "the message"


def test_payload_dates_and_nan_are_sent_json_safe(hook: Hook) -> None:
    hook.notifier().send("done", {"at": dt.date(2024, 1, 2), "mean": float("nan")})

    body = json.loads(hook.requests[0].body)
    assert body["at"] == "2024-01-02"
    assert body["mean"] is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_raises_transient_error(hook: Hook, status: int) -> None:
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        hook.notifier(f"/status/{status}").send("done", {})


def test_too_many_requests_raises_transient_error(hook: Hook) -> None:
    with pytest.raises(TransientError, match="HTTP 429"):
        hook.notifier("/status/429").send("done", {})


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_error_raises_permanent_error(hook: Hook, status: int) -> None:
    with pytest.raises(PermanentError, match=f"HTTP {status}") as raised:
        hook.notifier(f"/status/{status}").send("done", {})

    assert not isinstance(raised.value, TransientError)
    assert raised.value.details["status"] == status


def test_error_message_includes_the_start_of_the_response_body(hook: Hook) -> None:
    with pytest.raises(PermanentError, match="rejected by test server"):
        hook.notifier("/status/404").send("done", {})


def test_connection_refused_raises_transient_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"

    with pytest.raises(TransientError, match=f"webhook {url} could not be reached"):
        WebhookNotifier(WebhookNotifier.Config(url=url, timeout_s=2.0)).send("done", {})


def test_timeout_raises_transient_error(hook: Hook) -> None:
    with pytest.raises(TransientError, match="/slow"):
        hook.notifier("/slow", timeout_s=0.2).send("done", {})


def test_redirect_is_not_followed_and_raises_permanent_error(hook: Hook) -> None:
    with pytest.raises(PermanentError, match="HTTP 302"):
        hook.notifier("/redirect").send("done", {})

    assert [r.path for r in hook.requests] == ["/redirect"]


def test_error_names_the_url_without_credentials_or_query(hook: Hook) -> None:
    url = hook.base.replace("http://", f"http://bot:{SECRET}@") + f"/status/503?token={SECRET}"

    with pytest.raises(TransientError) as raised:
        WebhookNotifier(WebhookNotifier.Config(url=url)).send("done", {})

    assert f"{hook.base}/status/503" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in json.dumps(raised.value.to_dict())


def test_header_values_never_reach_logs_or_errors(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {SECRET}"}

    hook.notifier(headers=headers).send("done", {"job_id": "j1"})
    with pytest.raises(PermanentError) as raised:
        hook.notifier("/status/403", headers=headers).send("done", {"job_id": "j1"})

    assert SECRET not in caplog.text
    assert SECRET not in str(raised.value)


def test_header_values_are_not_in_the_repr(hook: Hook) -> None:
    notifier = hook.notifier(headers={"Authorization": f"Bearer {SECRET}"})

    assert SECRET not in repr(notifier)


def test_url_credentials_are_not_in_the_repr() -> None:
    config = WebhookNotifier.Config(url=f"https://bot:{SECRET}@hooks.example.com/x?key={SECRET}")

    assert SECRET not in repr(WebhookNotifier(config))
    assert "https://hooks.example.com/x" in repr(config)


def test_errors_survive_pickling_for_ray(hook: Hook) -> None:
    import pickle

    with pytest.raises(TransientError) as raised:
        hook.notifier("/status/500").send("done", {})

    again = pickle.loads(pickle.dumps(raised.value))
    assert isinstance(again, TransientError)
    assert str(again) == str(raised.value)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "http://"]
)
def test_config_rejects_urls_that_are_not_http(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        WebhookNotifier.Config(url=url)


def test_config_validation_error_does_not_echo_credentials() -> None:
    with pytest.raises(ValidationError, match="url") as raised:
        WebhookNotifier.Config(url=f"ftp://bot:{SECRET}@example.com/hook")

    assert SECRET not in str(raised.value)


def test_config_defaults() -> None:
    config = WebhookNotifier.Config(url="https://hooks.example.com/x")

    assert config.message == "Job {job_id} finished: {state}"
    assert config.headers == {}
    assert config.timeout_s == 10.0
    assert config.condition is None


def test_config_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValidationError, match="timeout_s"):
        WebhookNotifier.Config(url="https://hooks.example.com/x", timeout_s=0)


def test_redact_drops_user_info_query_and_fragment() -> None:
    assert redact("https://u:p@hooks.example.com:8443/a/b?token=x#f") == (
        "https://hooks.example.com:8443/a/b"
    )


def test_webhook_is_registered() -> None:
    assert notifiers.get("webhook") is WebhookNotifier
