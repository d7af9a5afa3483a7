"""A careful client for any OpenAI-compatible chat endpoint (GPT-4-class services, a local vLLM or Ollama
server): bounded concurrency, a request-rate limit, retries on 429 / 5xx / timeouts / dropped connections, an
on-disk cache keyed by the content hash of the request, and token + cost accounting.

HA-DPO (arXiv 2311.16839) runs thousands of GPT-4 calls to judge and rewrite descriptions; a rerun with the same
inputs must cost nothing, so every successful answer is cached (`llm_cache`) and a cache hit makes no request.

Retries are the openai SDK's own (`max_retries`; exponential backoff from 0.5 s with jitter, Retry-After
honoured). Every HTTP attempt, the SDK's retries included, passes through this module's transport, which waits
for the rate limit and counts the request, whether it was a retry and how it failed, so that usage reports
every retry exactly.

The API key is read from the environment variable the config names and handed to the SDK; it is registered with
`hadpo.errors.register_secret`, so that it is redacted from every message, record and log line (an endpoint's
error message that echoes it included).

Failures: an answer that is not a chat completion (an HTML page, truncated JSON, no choices) is retried like a
5xx and then fails its record (`LLMError`, counted as `MalformedResponse`); 401, 403 and 404 mean every request
will fail (a wrong key, no access, a wrong base_url or model), so the first one stops the run (`EndpointRefused`,
exit 1) and the calls after it are not sent.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field

import openai
from openai.types.chat import ChatCompletion

from hadpo.config import Config
from hadpo.errors import RunFailed, redact, register_secret
from hadpo.judge.llm_cache import AnswerCache, Completion, request_key

try:  # the HTTP library under the openai SDK: httpx, named httpx2 from the SDK's 3.x releases on
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx

log = logging.getLogger(__name__)

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)
# Statuses that every later request would get too: the run stops at the first.
REFUSED = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
MALFORMED = "MalformedResponse"
# The SDK's exception for an HTTP error status, named here for attempts the SDK retried without raising.
STATUS_ERRORS = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class LLMConfig(Config):
    """Where and how to call the chat endpoint. Every field has a default except the endpoint itself."""

    base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key (never the key)
    temperature: float = 0.0
    max_tokens: int = 1024
    json_mode: bool = False  # send response_format={"type": "json_object"} (not every local server knows it)
    timeout_s: float = 60.0  # per request
    max_retries: int = 4  # the SDK's retries per request (429, 5xx, timeout, connection), with its backoff
    max_concurrency: int = 4  # requests in flight at once
    requests_per_minute: float = 0.0  # 0 = unlimited
    invalid_retries: int = 1  # re-asks after an answer that fails validation, before the item is failed
    cache_dir: str | None = None  # on-disk answer cache; None = no cache
    price_per_1k_prompt: float = 0.0  # cost accounting, in whatever currency the user writes
    price_per_1k_completion: float = 0.0

    def api_key(self) -> str:
        # Local servers accept any key; an unset variable is not an error, the server decides.
        key = os.environ.get(self.api_key_env, "")
        register_secret(key)
        return key or "not-set"


@dataclass
class Usage:
    """Counters of one client's life; all updated under a lock, so safe across threads."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0  # requests that were retries of a failed one
    cache_hits: int = 0
    transport_failures: int = 0  # calls that failed (after max_retries, or at once when retrying cannot help)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached_prompt_tokens: int = 0  # tokens the cache saved
    cached_completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error class name -> count

    def as_dict(self) -> dict:
        return asdict(self)


class LLMError(RuntimeError):
    """The endpoint did not give an answer to this request after all retries; the record fails, the run goes on."""


class EndpointRefused(RunFailed):
    """The endpoint refuses every request (401, 403, 404): the run stops (exit 1)."""


class MalformedResponse(ValueError):
    """An HTTP 200 whose body is not a chat completion with a message."""


class RateLimiter:
    """At most `per_minute` request starts per minute, spaced evenly (0 = no limit)."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        time.sleep(max(0.0, start - now))


def error_name(status: int) -> str:
    """The SDK's exception name for an HTTP error status."""
    default = openai.InternalServerError if status >= 500 else openai.APIStatusError
    return STATUS_ERRORS.get(status, default).__name__


class CountingTransport(httpx.HTTPTransport):
    """The SDK's HTTP transport with the client's bookkeeping around every attempt."""

    def __init__(self, client: LLMClient):
        super().__init__()
        self.client = client

    def handle_request(self, request):
        self.client.rate.wait()
        self.client.attempt_started()
        try:
            response = super().handle_request(request)
        except httpx.TimeoutException:
            self.client.attempt_failed(openai.APITimeoutError.__name__)
            raise
        except httpx.TransportError:
            self.client.attempt_failed(openai.APIConnectionError.__name__)
            raise
        if response.status_code >= 400:
            self.client.attempt_failed(error_name(response.status_code))
        return response


class LLMClient:
    def __init__(self, config: LLMConfig):
        self.config = config
        self.usage = Usage()
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max(1, config.max_concurrency))
        self.rate = RateLimiter(config.requests_per_minute)
        self.cache = AnswerCache(config.cache_dir)
        self.attempts = threading.local()  # HTTP attempts of the call running on this thread
        self.refused: EndpointRefused | None = None
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key(),
            timeout=config.timeout_s,
            max_retries=config.max_retries,
            http_client=openai.DefaultHttpxClient(transport=CountingTransport(self)),
        )

    # -- calls --

    def params(self) -> dict:
        params = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        if self.config.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def complete(self, messages: list[dict], refresh: bool = False) -> Completion:
        """The endpoint's answer to `messages` (from the cache when seen before, unless `refresh`: then asked
        again and the cache entry replaced). Raises LLMError."""
        params = self.params()
        key = request_key(self.config.model, messages, params)
        cached = None if refresh else self.cache.get(key)
        if cached is not None:
            with self.lock:
                self.usage.cache_hits += 1
                self.usage.cached_prompt_tokens += cached.prompt_tokens
                self.usage.cached_completion_tokens += cached.completion_tokens
            return cached
        with self.slots:
            completion = self._call(messages, params)
        self.cache.put(key, completion)
        return completion

    def _call(self, messages: list[dict], params: dict) -> Completion:
        if self.refused is not None:  # a 401 / 403 / 404 seen on another thread: send nothing more
            raise self.refused
        self.attempts.count = 0
        for attempt in range(self.config.max_retries + 1):
            try:
                response = self.client.chat.completions.create(model=self.config.model, messages=messages, **params)
                text = _message_text(response)
            except openai.OpenAIError as error:
                raise self._failure(error) from None
            except (ValueError, AttributeError, TypeError) as error:  # MalformedResponse included
                # The SDK returns an HTML page as a str and raises on truncated JSON: a bad answer, not a crash.
                self.attempt_failed(MALFORMED)
                problem = redact(f"{type(error).__name__}: {str(error)[:120]}")
                log.debug("malformed response (attempt %d): %s", attempt + 1, problem)
                if attempt < self.config.max_retries:
                    time.sleep(min(8.0, 0.5 * 2**attempt))
                    continue
                with self.lock:
                    self.usage.transport_failures += 1
                raise LLMError(f"malformed response after {self.attempts.count} attempts ({problem})") from None
            return self._account(response, text)
        raise AssertionError("unreachable")

    def _failure(self, error: openai.OpenAIError) -> Exception:
        with self.lock:
            self.usage.transport_failures += 1
        if isinstance(error, RETRYABLE):
            return LLMError(f"{type(error).__name__} after {self.attempts.count} attempts")
        # The SDK's message is "Error code: 401 - <the server's message>"; the status is said once, below.
        message = redact(re.sub(r"^Error code: \d+ - ", "", str(getattr(error, "message", "") or error))[:200])
        if isinstance(error, REFUSED):
            with self.lock:
                self.refused = self.refused or EndpointRefused(
                    f"{self.config.base_url} refused the request ({type(error).__name__}, HTTP "
                    f"{getattr(error, 'status_code', '?')}: {message}); check the key in ${self.config.api_key_env}"
                    f", base_url and model '{self.config.model}'"
                )
            return self.refused
        # 400, 409, 422...: the SDK does not retry what retrying will not help
        return LLMError(f"{type(error).__name__}: {message}")

    def attempt_started(self) -> None:
        self.attempts.count = getattr(self.attempts, "count", 0) + 1
        with self.lock:
            self.usage.requests += 1
            self.usage.retries += self.attempts.count > 1

    def attempt_failed(self, error: str) -> None:
        with self.lock:
            self.usage.errors[error] = self.usage.errors.get(error, 0) + 1

    def _account(self, response: ChatCompletion, text: str) -> Completion:
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        with self.lock:
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            self.usage.cost += (
                prompt_tokens * self.config.price_per_1k_prompt
                + completion_tokens * self.config.price_per_1k_completion
            ) / 1000
        return Completion(text, prompt_tokens, completion_tokens)


def _message_text(response) -> str:
    """The assistant's text of a chat completion; anything else raises MalformedResponse."""
    if not isinstance(response, ChatCompletion):
        raise MalformedResponse(f"the body is a {type(response).__name__}, not a chat completion")
    if not response.choices:
        raise MalformedResponse("the completion has no choices")
    message = getattr(response.choices[0], "message", None)
    if message is None or not isinstance(message.content, str | None):
        raise MalformedResponse("the first choice has no message")
    return message.content or ""


def estimate_tokens(text: str) -> int:
    """A rough token count for --dry-run estimates (about 4 characters per token for English)."""
    return max(1, len(text) // 4)
