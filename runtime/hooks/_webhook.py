"""`type = "webhook"`: POST the event JSON to a URL, with retries and backoff.

httpx is imported here only: building a config without webhooks never loads it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from ..errors import ConfigError
from ._event import DriftEvent, HookError
from ._options import Options

logger = logging.getLogger("runtime.hooks")

_BODY_TAIL_CHARS = 200


class WebhookHook:
    """POSTs ``event.to_json()`` to `url`.

    Each attempt has `timeout_s`; connection errors, timeouts, 5xx and 429 are retried
    `retries` more times, sleeping ``backoff_s * 2**attempt`` between attempts; any other
    non-2xx status fails at once. Header values are never logged (they often hold tokens),
    and the hook's name drops any user:password and query string from the URL.

    Example (mlrt.toml)::

        [[hooks]]
        type = "webhook"
        url = "https://ci.example.com/retrain"
        timeout_s = 5
        retries = 3
        backoff_s = 0.5
        headers = { Authorization = "Bearer ..." }
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"'url' is not a valid URL: {url!r} ({exc})") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"'url' must be an http:// or https:// URL with a host, got {url!r}")
        if not timeout_s > 0:
            raise ConfigError(f"'timeout_s' must be > 0, got {timeout_s!r}")
        if retries < 0 or not backoff_s >= 0:
            raise ConfigError(f"need retries >= 0 and backoff_s >= 0, got {retries!r} and {backoff_s!r}")
        if parsed.userinfo and any(k.lower() == "authorization" for k in (headers or {})):
            # httpx would send the URL's user:password as Basic auth in place of the header.
            raise ConfigError(
                "give the webhook's credentials once: in the URL (user:password@) or in "
                "headers.Authorization, not both"
            )
        # The credentials travel as Basic auth beside a URL without them: request logs
        # (httpx writes every URL it posts to at INFO) never see the password.
        self._auth = (parsed.username, parsed.password) if parsed.userinfo else None
        self.url = str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"Content-Type": "application/json", "User-Agent": "mlrt-hooks", **(headers or {})}
        self._sleep = sleep
        self.name = "webhook:" + str(parsed.copy_with(username=None, password=None, query=None))

    @classmethod
    def from_options(cls, options: Options) -> WebhookHook:
        url = options.text("url")
        timeout_s = options.number("timeout_s", 5.0, strict=True)
        retries = options.integer("retries", 3)
        backoff_s = options.number("backoff_s", 0.5)
        headers = options.raw("headers", {})
        if not isinstance(headers, Mapping):
            raise ConfigError("'headers' must be a table of strings")
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                # Name the header, never its value.
                raise ConfigError(f"'headers': the value of {key!r} must be a string")
        options.finish()
        return cls(url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, headers=headers)

    def __repr__(self) -> str:
        return f"WebhookHook({self.name!r})"

    def __call__(self, event: DriftEvent) -> None:
        body = json.dumps(event.to_json()).encode()
        attempts = self.retries + 1
        problem = ""
        # One client per firing: firings are rare, and nothing is left open between them.
        with httpx.Client(
            timeout=self.timeout_s, headers=self._headers, auth=self._auth, follow_redirects=False
        ) as client:
            for attempt in range(attempts):
                try:
                    response = client.post(self.url, content=body)
                except httpx.TransportError as exc:
                    problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                else:
                    if response.is_success:
                        logger.debug("%s: HTTP %d, attempt %d", self.name, response.status_code, attempt + 1)
                        return
                    problem = f"HTTP {response.status_code}{_body_tail(response)}"
                    if response.status_code != 429 and response.status_code < 500:
                        raise HookError(f"{self.name}: {problem} (not retried)")
                if attempt + 1 < attempts:
                    delay = self.backoff_s * 2**attempt
                    logger.warning(
                        "%s: attempt %d/%d failed (%s); retrying in %.2f s",
                        self.name, attempt + 1, attempts, problem, delay,
                    )
                    self._sleep(delay)
        raise HookError(f"{self.name}: gave up after {attempts} attempt(s): {problem}")


def _body_tail(response: httpx.Response) -> str:
    text = response.text.strip()
    if not text:
        return ""
    return ": " + (text if len(text) <= _BODY_TAIL_CHARS else text[:_BODY_TAIL_CHARS] + "...")
