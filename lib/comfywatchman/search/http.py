"""The one HTTP client every search backend shares.

One ``HttpClient`` lives for one cycle. It owns a ``requests.Session`` and adds what each remote call needs:
a User-Agent, (connect, read) timeouts, tenacity retries on 429, 5xx and connection errors with exponential
backoff that honours ``Retry-After`` (never on other 4xx), a minimum gap between requests to one host, a
cap on requests per cycle, a circuit breaker for hosts that cannot be reached at all, and a request count
per host.

Credentials are attached here and nowhere else: each token belongs to one host (``host:port``), worked out by
the config loader from what each backend declares (``Config.tokens``; this module knows no backend), and is
sent only there, also across redirects, which this client follows itself so that every hop is checked, counted and
rate limited. Secrets never appear in exception text or logs: every message is scrubbed first.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from comfywatchman import __version__

if TYPE_CHECKING:
    from comfywatchman.config import Config, Secret

logger = logging.getLogger(__name__)

USER_AGENT = f"comfywatchman/{__version__} (+https://github.com/comfywatchman)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_TOKEN_PARAM = re.compile(r"(?i)((?:token|api_key|apikey|key|access_token)=)[^&\s'\"#]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")


_KNOWN_SECRETS: set[str] = set()


def scrub_text(text: str) -> str:
    """Return ``text`` with every registered secret, ``token=``-like URL parameter and Bearer value masked."""
    for value in _KNOWN_SECRETS:
        text = text.replace(value, "***")
    text = _TOKEN_PARAM.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


class _ScrubFilter(logging.Filter):
    """Masks secrets in records of loggers we do not own (urllib3 logs full request lines at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = scrub_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_SCRUB_FILTER = _ScrubFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_SCRUB_FILTER)


class RemoteError(Exception):
    """A remote call that gave no usable answer. The message is scrubbed of secrets and fit for a report.

    ``kind`` is one of ``budget``, ``circuit_open``, ``connection``, ``timeout``, ``http``, ``bad_json``,
    ``redirects``; ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, kind: str, host: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.host = host
        self.status = status


@dataclass(frozen=True)
class HttpSettings:
    """Knobs of the shared client, read from the validated ``[search]`` section (defaults: default.toml)."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    retry_after_max: float
    min_interval: float
    max_requests: int

    @classmethod
    def from_config(cls, search: Mapping[str, Any]) -> HttpSettings:
        """Return the settings from the ``[search]`` config section (every key is there once validated)."""
        return cls(
            connect_timeout=float(search["connect_timeout_seconds"]),
            read_timeout=float(search["read_timeout_seconds"]),
            max_attempts=int(search["max_attempts"]),
            backoff_base=float(search["backoff_base_seconds"]),
            backoff_max=float(search["backoff_max_seconds"]),
            retry_after_max=float(search["retry_after_max_seconds"]),
            min_interval=float(search["min_interval_seconds"]),
            max_requests=int(search["max_requests_per_cycle"]),
        )


def host_of(url: str) -> str:
    """Return the ``host:port`` part of ``url``, lower-case (the unit tokens, rate limits and counts use)."""
    return urlsplit(url).netloc.lower().rsplit("@", 1)[-1]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait (delta or HTTP date), or None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth another try."""

    def __init__(self, message: str, response: requests.Response | None = None, connect_failed: bool = False):
        super().__init__(message)
        self.response = response
        self.connect_failed = connect_failed


def _connect_failed(exc: BaseException, kinds: tuple[type[BaseException], ...] | None = None) -> bool:
    # A name that does not resolve or a refused/unroutable connection shows up as urllib3's NewConnectionError
    # (NameResolutionError is a subclass) or ConnectTimeoutError somewhere in the exception's cause chain.
    kinds = kinds or (NewConnectionError, ConnectTimeoutError, requests.ConnectTimeout)
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kinds):
            return True
        if isinstance(item, BaseException):
            stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return False


class HttpClient:
    """A requests session with the project's timeouts, retries, pacing, budget, circuit breaker and tokens.

    ``tokens`` maps a host (``host:port`` as in ``host_of``) to the Secret sent to it as a Bearer token.
    ``sleep`` and ``clock`` are parameters so tests need not wait.
    """

    def __init__(
        self,
        settings: HttpSettings,
        tokens: Mapping[str, Secret] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._tokens: dict[str, Secret] = {}
        for host, secret in (tokens or {}).items():
            self.add_token(host, secret)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Credentials come from this client only, never from ~/.netrc behind our back.
        self.session.trust_env = False
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._last_request: dict[str, float] = {}
        self._down: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.sleeps: list[float] = []

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> HttpClient:
        """Return a client for one cycle built from ``config``: the ``[search]`` settings and the host tokens
        the loader worked out from the backends' declared credentials (``Config.tokens``)."""
        return cls(HttpSettings.from_config(config.section("search")), tokens=config.tokens, **kwargs)

    # -- bookkeeping -------------------------------------------------------------------------------------

    @property
    def total_requests(self) -> int:
        """Return how many requests (retries and redirect hops included) this client has sent."""
        return sum(self.counts.values())

    def request_counts(self) -> dict[str, int]:
        """Return the number of requests sent per host, for the report and the closing note."""
        return dict(self.counts)

    def add_token(self, host: str, secret: Secret) -> None:
        """Send ``secret`` as a Bearer token to ``host`` (``host:port``) from now on, and nowhere else."""
        if secret:
            self._tokens[host.lower()] = secret
            _KNOWN_SECRETS.add(secret.reveal())

    def scrub(self, text: str) -> str:
        """Return ``text`` with every known secret, ``token=`` URL parameter and Bearer value masked."""
        for secret in self._tokens.values():
            value = secret.reveal()
            if value:
                text = text.replace(value, "***")
        return scrub_text(text)

    # -- the call ----------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        follow_redirects: bool = True,
        retry_read_timeout: bool = True,
    ) -> requests.Response:
        """Send one logical request and return the final response (any status that is not retried).

        Redirects are followed here (up to 5) unless ``follow_redirects`` is False; the token of the new host,
        if any, replaces the old one. ``timeout`` overrides the read timeout for slow endpoints (an LLM).
        Raise RemoteError when the request budget is spent, the host was found unreachable earlier this cycle,
        the connection fails or times out after every retry, or a 429/5xx persists after every retry.
        """
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send_with_retries(method, current, params, json, headers, timeout, retry_read_timeout)
            if not follow_redirects or response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            if not location:
                return response
            current = urljoin(response.url or current, location)
            params = None  # the Location already carries the query it wants
            if response.status_code == 303:
                method, json = "GET", None
            response.close()
        raise RemoteError(f"too many redirects from {self.scrub(url)}", "redirects", host_of(url))

    def get_json(self, url: str, **kwargs: Any) -> tuple[int, Any]:
        """Return ``(status, JSON body or None)`` for a GET; raise RemoteError if a 2xx body is not JSON."""
        response = self.request("GET", url, **kwargs)
        return response.status_code, self.json_of(response, required=response.ok)

    def json_of(self, response: requests.Response, required: bool = True) -> Any:
        """Return the JSON body of ``response``; None if it is not JSON and ``required`` is False.

        Raise RemoteError (kind ``bad_json``) for a body that is not JSON when it is required: a truncated
        answer is a failure of the remote side, never an empty result.
        """
        try:
            return response.json()
        except ValueError:
            if not required:
                return None
            raise RemoteError(
                f"{host_of(response.url)} answered HTTP {response.status_code} with a body that is not valid "
                f"JSON (truncated?) for {self.scrub(_path_of(response.url))}",
                "bad_json",
                host_of(response.url),
                response.status_code,
            ) from None

    def _send_with_retries(
        self,
        method: str,
        url: str,
        params: Any,
        json: Any,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        retry_read_timeout: bool,
    ) -> requests.Response:
        host = host_of(url)
        if host in self._down:
            raise RemoteError(
                f"{host} was unreachable earlier this cycle ({self._down[host]}); not tried again",
                "circuit_open",
                host,
            )
        settings = self.settings
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, settings.max_attempts)),
            retry=tenacity.retry_if_exception_type(_Retryable),
            wait=self._wait,
            sleep=self._record_sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        try:
            return retrying(self._attempt, method, url, params, json, headers, timeout, retry_read_timeout)
        except _Retryable as exc:
            if exc.response is not None:
                status = exc.response.status_code
                raise RemoteError(
                    self.scrub(
                        f"{host} answered HTTP {status} after {settings.max_attempts} attempts "
                        f"({_path_of(url)}){_error_text(exc.response)}"
                    ),
                    "http",
                    host,
                    status,
                ) from None
            if exc.connect_failed:
                # Trip the breaker: an offline machine or dead host must not cost a retry ladder per model.
                self._down[host] = str(exc)
                raise RemoteError(f"cannot connect to {host}: {exc}", "connection", host) from None
            kind = "timeout" if "timed out" in str(exc) else "connection"
            raise RemoteError(f"{host}: {exc}", kind, host) from None

    def _attempt(
        self,
        method: str,
        url: str,
        params: Any,
        json: Any,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        retry_read_timeout: bool = True,
    ) -> requests.Response:
        host = host_of(url)
        self._take_budget(host, url)
        self._pace(host)
        send_headers = dict(headers or {})
        send_headers.pop("Authorization", None)  # only this client decides who gets a credential
        token = self._tokens.get(host)
        if token:
            send_headers["Authorization"] = f"Bearer {token.reveal()}"
        read_timeout = self.settings.read_timeout if timeout is None else timeout
        logger.debug("%s %s", method, self.scrub(url))
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                headers=send_headers,
                timeout=(self.settings.connect_timeout, read_timeout),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            if _connect_failed(exc):
                raise _Retryable(f"connection to {host} timed out", connect_failed=True) from None
            message = f"no answer from {host} within {read_timeout:g} s (read timed out)"
            if not retry_read_timeout:
                raise RemoteError(message, "timeout", host) from None
            raise _Retryable(message) from None
        except requests.ConnectionError as exc:
            if _connect_failed(exc, (NameResolutionError,)):
                # A host name that does not resolve (no network, no DNS) will not resolve a second later:
                # no retry ladder, and the breaker spares every later request of the cycle.
                message = f"cannot connect to {host}: its name does not resolve (no network?)"
                self._down[host] = "its name does not resolve"
                raise RemoteError(message, "connection", host) from None
            if _connect_failed(exc):
                raise _Retryable(
                    f"connection to {host} failed (refused or name not resolved)", connect_failed=True
                ) from None
            raise _Retryable(f"connection to {host} was reset or broken ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise RemoteError(f"{host}: request failed: {self.scrub(str(exc))}", "connection", host) from None
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", response=response)
        return response

    def _take_budget(self, host: str, url: str) -> None:
        with self._lock:
            if self.total_requests >= self.settings.max_requests:
                raise RemoteError(
                    f"request budget exhausted ({self.settings.max_requests} requests this cycle); {host} not asked",
                    "budget",
                    host,
                )
            self.counts[host] += 1

    def _pace(self, host: str) -> None:
        # A minimum gap per host keeps us polite to services that publish no rate limit (Civitai).
        gap = self.settings.min_interval
        last = self._last_request.get(host)
        if gap > 0 and last is not None:
            wait = gap - (self._clock() - last)
            if wait > 0:
                self._sleep(wait)
        self._last_request[host] = self._clock()

    def _wait(self, state: tenacity.RetryCallState) -> float:
        s = self.settings
        backoff = float(min(s.backoff_max, s.backoff_base * (2 ** (state.attempt_number - 1))))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.response is not None:
            asked = parse_retry_after(exc.response.headers.get("Retry-After"))
            if asked is not None:
                # The server said when; waiting less earns another refusal. The cap stops a hostile value.
                return float(max(backoff, min(asked, s.retry_after_max)))
        return backoff

    def _record_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._sleep(seconds)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info("retrying after %s (attempt %d, waiting %.2f s)", self.scrub(str(exc)), state.attempt_number, wait)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f": {body['error'][:200]}"
    return ""
