"""Webhook notifications: one JSON POST per finished job (Slack-compatible ``text`` field).

Errors follow the retry rules: a connection failure, a timeout, HTTP 408, 429 or 5xx is a
:class:`raysight.errors.TransientError`; any other refusal (4xx, a redirect) is a
:class:`raysight.errors.PermanentError`. Messages name the URL without credentials or query
string, and header values (tokens) never appear in messages, logs or ``repr``.

Example::

    hook = WebhookNotifier(WebhookNotifier.Config(url="https://hooks.example.com/raysight"))
    hook.send("Job daily_sales finished: COMPLETED", {"job_id": "daily_sales"})
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import ConfigDict, Field, field_validator

from raysight.errors import PermanentError, TransientError
from raysight.exporters.files import jsonable_value
from raysight.plugins import Notifier, PluginConfig

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: request timeout, too many requests and server errors
RETRYABLE_STATUS = frozenset({408, 429})


class WebhookConfig(PluginConfig):
    """``{channel: webhook, url, message?, headers?, timeout_s?, condition?}``.

    ``message`` is rendered by the pipeline; ``condition`` is evaluated by the pipeline.
    """

    # validation errors must not echo a URL with credentials or a header token back to logs
    model_config = ConfigDict(**PluginConfig.model_config, hide_input_in_errors=True)

    channel: Literal["webhook"] = "webhook"
    url: str
    message: str = "Job {job_id} finished: {state}"
    # repr=False: header values are usually tokens and a config repr ends up in logs
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout_s: float = Field(default=10.0, gt=0)
    condition: str | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # a config repr ends up in logs: show the URL without its credentials
        for key, value in super().__repr_args__():
            yield key, redact(value) if key == "url" else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"webhook url must be an http:// or https:// URL with a host, got {redact(value)!r}"
            )
        return value


class WebhookNotifier(Notifier[WebhookConfig]):
    """POSTs ``{"text": message, **payload}`` as JSON to the configured URL.

    User info in the URL (``https://user:pass@host/...``) is sent as Basic authorization.
    """

    name = "webhook"
    Config = WebhookConfig

    def send(self, message: str, payload: dict[str, Any]) -> None:
        cfg = self.config
        url = redact(cfg.url)
        # the rendered message is the point of the notification: a payload key cannot replace it
        document = {"text": message, **{k: v for k, v in payload.items() if k != "text"}}
        body = json.dumps(jsonable_value(document, "payload", default=str), ensure_ascii=False)
        target, auth = _split_credentials(cfg.url)
        request = urllib.request.Request(
            target,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": "raysight", **auth},
            method="POST",
        )
        for key, value in cfg.headers.items():  # after the defaults, so they can be replaced
            request.add_header(key, value)
        try:
            # built per call so that proxy settings from the environment are read at send time
            opener = urllib.request.build_opener(_NoRedirect)
            with opener.open(request, timeout=cfg.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, url) from None
        except http.client.InvalidURL:
            # its message repeats the whole URL, credentials included
            raise PermanentError(f"webhook url {url} is not a valid URL", url=url) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"webhook {url} could not be reached: {reason}", url=url) from None
        log.info("job %s: webhook %s answered %d", payload.get("job_id", "?"), url, status)


def redact(url: str) -> str:
    """The URL without user info, query string or fragment (they may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without user info, and a Basic Authorization header made from it (if any)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return urlunsplit(parts._replace(netloc=netloc)), {"Authorization": f"Basic {token}"}


def _http_error(exc: urllib.error.HTTPError, url: str) -> Exception:
    status = exc.code
    try:
        detail = exc.read(200).decode("utf-8", "replace").strip()
    except OSError:
        detail = ""
    finally:
        exc.close()
    text = f"webhook {url} answered HTTP {status} {exc.reason}" + (f": {detail}" if detail else "")
    if status >= 500 or status in RETRYABLE_STATUS:
        return TransientError(text, url=url, status=status)
    if 300 <= status < 400:
        text += " (redirects are not followed; configure the final URL)"
    return PermanentError(text, url=url, status=status)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the POST as a GET and forward auth headers."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
