"""The one HTTP client every search backend shares.

One ``HttpClient`` lives for one cycle. It owns a ``requests.Session`` and adds what each remote call needs:
a User-Agent, (connect, read) timeouts, tenacity retries on 429, 5xx and connection errors with exponential
backoff that honours ``Retry-After`` (never on other 4xx), a minimum gap between requests to one host, a
cap on requests per cycle, a circuit breaker for hosts that cannot be reached at all, and a request count
per host.

Every bound holds whatever a server does: the cycle's network work has a deadline (``network_deadline_seconds``;
past it nothing is sent and the refusal is kind ``deadline``, which the search stage reports as "not searched
yet"), every timeout and wait is cut to the time left, one request's whole duration is bounded
(``request_timeout_seconds``: a server that drips one byte a second is cut off, not only one that falls silent),
a body larger than ``max_response_mb`` is refused while it streams in, and a host that keeps timing out
(``host_timeouts_before_giving_up``), stays throttled after every retry, or asks (Retry-After) for a wait
longer than the time left is given up for the rest of the cycle, like one that does not resolve.

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
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin, urlsplit

from comfywatchman import __version__

if TYPE_CHECKING:
    import requests
    import tenacity
    from urllib3 import exceptions as urllib3_exceptions
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    from comfywatchman.config import Config, Secret
    from comfywatchman.search import request_watch

logger = logging.getLogger(__name__)

USER_AGENT = f"comfywatchman/{__version__} (+https://github.com/comfywatchman)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: What a request refused past the cycle's network deadline says; the search stage repeats it.
# The words policy.not_searched_yet turns a deadline refusal into, so both say the same.
DEADLINE_REASON = "not searched yet (network deadline reached); next cycle"
# Bytes asked of the socket per read while a body streams in: small enough that the whole-request limit is
# checked often, large enough that a real answer takes few reads.
_READ_CHUNK = 64 * 1024
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

    ``kind`` is one of ``budget``, ``deadline``, ``circuit_open``, ``connection``, ``timeout``, ``throttled``,
    ``http``, ``bad_json``, ``too_large``, ``redirects``; ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, kind: str, host: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.host = host
        self.status = status


# A NamedTuple, not a frozen dataclass: every cycle's process makes this class, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class HttpSettings(NamedTuple):
    """Knobs of the shared client, read from the validated ``[search]`` section (defaults: default.toml)."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    retry_after_max: float
    min_interval: float
    max_requests: int
    network_deadline: float
    request_timeout: float
    host_timeouts: int
    max_response_bytes: int

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
            network_deadline=float(search["network_deadline_seconds"]),
            request_timeout=float(search["request_timeout_seconds"]),
            host_timeouts=int(search["host_timeouts_before_giving_up"]),
            max_response_bytes=int(float(search["max_response_mb"]) * 1024 * 1024),
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


def _import_network() -> None:
    """Import requests, tenacity and urllib3 (a tenth of a second) into this module's names, once: every
    process loads the search backends to read their config sections, but only one that makes a request
    (an HttpClient is made) needs them."""
    global requests, tenacity, urllib3_exceptions, ConnectTimeoutError, NameResolutionError, NewConnectionError
    global request_watch
    import requests
    import tenacity
    from urllib3 import exceptions as urllib3_exceptions
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    from comfywatchman.search import request_watch


class _TooSlow(Exception):
    """Internal: one request took longer in all than it may (a server that drips its answer)."""


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth another try."""

    def __init__(self, message: str, response: requests.Response | None = None, connect_failed: bool = False):
        super().__init__(message)
        self.response = response
        self.connect_failed = connect_failed


def _connect_failed(exc: BaseException, kinds: tuple[type[BaseException], ...] | None = None) -> bool:
    # A name that does not resolve or a refused/unroutable connection shows up as urllib3's NewConnectionError
    # (NameResolutionError is a subclass) or ConnectTimeoutError somewhere in the exception's cause chain.
    _import_network()
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
    ``sleep`` and ``clock`` are parameters so tests need not wait. The network deadline starts when the client
    is made (one client per cycle).
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
        # The session (and the network modules, a tenth of a second to import) is made at the first request:
        # an offline cycle makes a client for its backends and never sends anything.
        self._session: requests.Session | None = None
        if session is not None:
            self._ready(session)
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._last_request: dict[str, float] = {}
        self._down: dict[str, str] = {}
        self._deadline = clock() + settings.network_deadline
        # Per host: timeouts (toward giving it up) and failed attempts of any kind (a 404 from a host that is
        # failing is no evidence, see declared.verify).
        self._timeouts: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self.deadline_refusals = 0
        self.counts: Counter[str] = Counter()
        self.sleeps: list[float] = []

    @property
    def session(self) -> requests.Session:
        """Return the client's requests session, made (with the network modules imported) when first asked."""
        if self._session is None:
            _import_network()
            return self._ready(requests.Session())
        return self._session

    def _ready(self, session: requests.Session) -> requests.Session:
        _import_network()
        session.headers["User-Agent"] = USER_AGENT
        # Credentials come from this client only, never from ~/.netrc behind our back.
        session.trust_env = False
        # Every answer is read under a watch, so a request cannot outlast its whole-request limit (headers too).
        request_watch.mount(session)
        self._session = session
        return session

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

    def time_left(self) -> float:
        """Return the seconds left before the cycle's network deadline (0 once it has passed)."""
        return max(0.0, self._deadline - self._clock())

    @property
    def deadline_reached(self) -> bool:
        """Return whether the cycle's network deadline has passed (nothing more is sent)."""
        return self.time_left() <= 0

    def refuse_past_deadline(self, host: str = "") -> RemoteError:
        """Return (for the caller to raise) the refusal of work past the deadline, and count it."""
        self.deadline_refusals += 1
        return RemoteError(DEADLINE_REASON, "deadline", host)

    def host_failures(self, host: str) -> int:
        """Return how many attempts to ``host`` failed this cycle (timeouts, resets, 429/5xx, refusals)."""
        return self._failures[host.lower()] + (1 if host.lower() in self._down else 0)

    def given_up(self, host: str) -> str | None:
        """Return why ``host`` was given up for the rest of the cycle, or None while it is still asked."""
        return self._down.get(host.lower())

    def _give_up(self, host: str, why: str) -> None:
        if host not in self._down:
            logger.warning("giving up %s for the rest of this cycle: %s", host, why)
        self._down[host] = why

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
        if any, replaces the old one. ``timeout`` overrides the read timeout and the whole-request limit for slow
        endpoints (an LLM). The body is read here, bounded in size and time, so the response returned holds it.
        Raise RemoteError when the request budget is spent, the network deadline has passed, the host was given
        up earlier this cycle, the connection fails or times out after every retry, a 429/5xx persists after
        every retry, or the body is too large or too slow.
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
        if self.deadline_reached:
            raise self.refuse_past_deadline(host)
        _import_network()
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
                if status == 429:
                    # Still throttled after every retry: asking again this cycle only earns more refusals.
                    self._give_up(host, f"HTTP 429 after {settings.max_attempts} attempts")
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
        left = self.time_left()
        if left <= 0:
            raise self.refuse_past_deadline(host)
        self._take_budget(host, url)
        self._pace(host)
        send_headers = dict(headers or {})
        send_headers.pop("Authorization", None)  # only this client decides who gets a credential
        token = self._tokens.get(host)
        if token:
            send_headers["Authorization"] = f"Bearer {token.reveal()}"
        # Every wait is cut to the time left, so one request cannot outlast the cycle's deadline.
        read_timeout = min(self.settings.read_timeout if timeout is None else timeout, left)
        whole = min(self.settings.request_timeout if timeout is None else max(timeout, read_timeout), left)
        logger.debug("%s %s", method, self.scrub(url))
        started = self._clock()
        try:
            with request_watch.watching(whole) as watch:
                try:
                    response = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        headers=send_headers,
                        timeout=(min(self.settings.connect_timeout, left), read_timeout),
                        allow_redirects=False,
                        stream=True,
                    )
                    self._read_body(response, host, url, started, whole)
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                    if watch.expired:  # the watch cut a server that dripped its headers or body
                        raise _TooSlow from None
                    raise
        except requests.Timeout as exc:
            if _connect_failed(exc):
                self._failures[host] += 1
                raise _Retryable(f"connection to {host} timed out", connect_failed=True) from None
            message = f"no answer from {host} within {read_timeout:g} s (read timed out)"
            self._timed_out(host, message)
            if not retry_read_timeout:
                raise RemoteError(message, "timeout", host) from None
            raise _Retryable(message) from None
        except _TooSlow:
            message = f"{host} timed out: no whole answer within {whole:g} s ({self.scrub(_path_of(url))}); cut off"
            self._timed_out(host, message)
            if not retry_read_timeout:
                raise RemoteError(message, "timeout", host) from None
            raise _Retryable(message) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise self._connection_failure(host, exc) from None
        except requests.RequestException as exc:
            self._failures[host] += 1
            raise RemoteError(f"{host}: request failed: {self.scrub(str(exc))}", "connection", host) from None
        if response.status_code in RETRY_STATUSES:
            self._failures[host] += 1
            raise _Retryable(f"HTTP {response.status_code}", response=response)
        return response

    def _connection_failure(
        self, host: str, exc: requests.ConnectionError | requests.exceptions.ChunkedEncodingError
    ) -> RemoteError | _Retryable:
        """Count a broken or refused connection to ``host``; return what to raise: a _Retryable, or a RemoteError
        (the host marked down) for a name that does not resolve."""
        self._failures[host] += 1
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return _Retryable(f"connection to {host} was cut while it answered")
        if _connect_failed(exc, (NameResolutionError,)):
            # A host name that does not resolve (no network, no DNS) will not resolve a second later:
            # no retry ladder, and the breaker spares every later request of the cycle.
            self._down[host] = "its name does not resolve"
            return RemoteError(f"cannot connect to {host}: its name does not resolve (no network?)", "connection", host)
        if _connect_failed(exc):
            return _Retryable(f"connection to {host} failed (refused or name not resolved)", connect_failed=True)
        return _Retryable(f"connection to {host} was reset or broken ({type(exc).__name__})")

    def _timed_out(self, host: str, message: str) -> None:
        """Count a timeout of ``host``; give the host up once it has cost ``host_timeouts`` of them."""
        self._failures[host] += 1
        self._timeouts[host] += 1
        if self._timeouts[host] >= self.settings.host_timeouts:
            self._give_up(host, f"{self._timeouts[host]} timeouts, the last: {message}")
            raise RemoteError(f"{message}; {host} given up for the rest of this cycle", "timeout", host)

    def _read_body(self, response: requests.Response, host: str, url: str, started: float, whole: float) -> None:
        """Read the body of a streamed ``response`` into it, refusing one larger than ``max_response_bytes``
        (by its Content-Length first, then by what arrives) and raising _TooSlow once the request has taken
        ``whole`` seconds in all. Each read takes what the socket has, so a slow drip is checked often."""
        limit = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._too_large(response, host, url, f"declares {int(declared)} bytes")
        if response.request is not None and response.request.method == "HEAD":
            response._content = b""
            response.close()
            return
        read = getattr(response.raw, "read1", None) or response.raw.read
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self._clock() - started > whole:
                    raise _TooSlow
                block = read(_READ_CHUNK, decode_content=True)
                if not block:
                    break
                size += len(block)
                if size > limit:
                    raise self._too_large(response, host, url, f"sent {size} bytes and counting")
                chunks.append(block)
        except (_TooSlow, RemoteError):
            response.close()
            raise
        except (OSError, ValueError, urllib3_exceptions.HTTPError) as exc:
            # A reset, a cut or a broken chunked/gzip stream while the body came in: retried like a reset.
            response.close()
            if isinstance(exc, urllib3_exceptions.ReadTimeoutError):
                raise requests.ReadTimeout(str(exc)) from None
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
        response._content = b"".join(chunks)
        response.raw.release_conn()

    def _too_large(self, response: requests.Response, host: str, url: str, size: str) -> RemoteError:
        """Return the refusal of an answer larger than ``max_response_mb`` (``size`` says how large)."""
        mib = self.settings.max_response_bytes / (1024 * 1024)
        return RemoteError(
            f"{host} answered more than {mib:g} MiB (it {size}) for {self.scrub(_path_of(url))}; "
            "refused: no API answer is that large",
            "too_large",
            host,
            response.status_code,
        )

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
        """Return the wait before the next attempt; raise RemoteError instead of a wait past the deadline."""
        s = self.settings
        backoff = float(min(s.backoff_max, s.backoff_base * (2 ** (state.attempt_number - 1))))
        exc = state.outcome.exception() if state.outcome else None
        response = exc.response if isinstance(exc, _Retryable) else None
        host = host_of(response.url or "") if response is not None else ""
        wait = backoff
        if response is not None:
            asked = parse_retry_after(response.headers.get("Retry-After"))
            if asked is not None and asked >= self.time_left():
                # Nothing may be sent to this host before the deadline without ignoring what it asked.
                self._give_up(host, f"HTTP {response.status_code} asking to wait {asked:g} s")
                raise RemoteError(
                    f"{host} answered HTTP {response.status_code} asking to wait {asked:g} s, longer than this "
                    "cycle has left; given up for the rest of this cycle",
                    "throttled",
                    host,
                    response.status_code,
                )
            if asked is not None:
                # The server said when; waiting less earns another refusal. The cap stops a hostile value.
                wait = float(max(backoff, min(asked, s.retry_after_max)))
        if wait >= self.time_left():
            raise self.refuse_past_deadline(host)
        return wait

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
