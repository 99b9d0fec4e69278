"""Token-aware balancing and affinity for generative services: what a request will cost, and where it goes.

A replica of a ``format: llm`` service runs many sequences at once (continuous batching): one request that asks for
2,000 tokens keeps it busy about as long as a hundred that ask for 20. Counting requests (``core.pick``) balances the
count, not the work, so the long generations pile up on whichever replica drew them. The vLLM production stack's
router and llm-d's scheduler weigh requests by tokens instead; so does this module:

- ``estimate``: a request's work from the body the router already holds -- the prompt's tokens (UTF-8 bytes / 4,
  the usual cheap estimate for English text under BPE tokenizers; the length of a list of token ids) plus the tokens
  it may generate (``max_tokens`` / ``max_completion_tokens``, else the route's default), times ``n`` -- and, with
  affinity, its key: the session header or OpenAI's ``user`` field (``affinity: session``), or the prompt's first
  ``prefix_chars`` characters (``affinity: prefix``, so that requests sharing a system prompt or a conversation
  reach the replica whose prefix cache holds it).
- ``choose``: least outstanding tokens by power of two choices (P2C, as ``core.pick`` on requests), or, for a
  request with an affinity key, its home replica by rendezvous hashing (Thaler and Ravishankar, "Using Name-Based
  Mappings to Increase Hit Rates", 1998: each replica scores ``hash(key, replica)`` and the highest wins, so a
  replica leaving moves only the keys it was home to, and one joining takes only the keys it now wins) with a bound
  on its load (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018: a replica is
  eligible while its load is below ``load_factor`` x the average load counting the new request; past it the request
  goes to the least loaded replica).

Pure: no sockets, no clock; the router's shell (``router.py``) charges each try's tokens to its backend
(``BackendState.tokens``) and discharges them when the try ends (the response, or the stream, is over).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import orjson

from kubeinfer.local.router.core import draw_two

__all__ = [
    "AFFINITIES",
    "BALANCES",
    "LOAD_FACTOR",
    "HasTokens",
    "RoutingPolicy",
    "Work",
    "choose",
    "estimate",
    "rendezvous_home",
]

Affinity = Literal["none", "session", "prefix"]
AFFINITIES: tuple[Affinity, ...] = ("none", "session", "prefix")
BALANCES = ("auto", "requests", "tokens")
BYTES_PER_TOKEN = 4  # the cheap prompt estimate: ~4 bytes of English text per BPE token
LOAD_FACTOR = 1.25  # the bound's default: c = 1 + epsilon of the bounded-loads paper, with epsilon 0.25
COMPLETIONS_DEFAULT = 16  # OpenAI's default max_tokens for /v1/completions (and the OIP generate routes here)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How the router weighs and places requests (the spec's ``spec.routing``, resolved)."""

    tokens: bool = True
    """Weigh requests by estimated tokens (generative services); False: each request weighs 1."""
    affinity: Affinity = "none"
    session_header: bytes = b"x-session-id"
    """Lower-case header name of the session key (``affinity: session``); OpenAI's ``user`` field is the fallback."""
    prefix_chars: int = 256
    """Characters of the prompt that make its key (``affinity: prefix``)."""
    load_factor: float = LOAD_FACTOR
    """A home replica takes a keyed request while its load is below this x the average (counting the request)."""
    default_max_tokens: int = 256
    """The generation estimate of a chat request without ``max_tokens`` (whose server default is the context left)."""

    def __post_init__(self) -> None:
        if self.affinity not in AFFINITIES:
            raise ValueError(f"affinity must be one of {', '.join(AFFINITIES)}, got {self.affinity!r}")
        if self.load_factor <= 1.0:
            raise ValueError(f"load_factor must be > 1, got {self.load_factor}")
        if self.prefix_chars < 1:
            raise ValueError(f"prefix_chars must be an integer >= 1, got {self.prefix_chars}")
        if self.default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be an integer >= 1, got {self.default_max_tokens}")

    @classmethod
    def from_spec(cls, spec: Any) -> RoutingPolicy | None:
        """The policy of a ``ServiceSpec``; None when it routes as any service does (requests, no affinity)."""
        r = spec.routing
        llm = any(m.format == "llm" for m in spec.served_models)
        tokens = r.balance == "tokens" or (r.balance == "auto" and llm)
        if not tokens and r.affinity == "none":
            return None
        return cls(
            tokens=tokens,
            affinity=r.affinity,
            session_header=r.sessionHeader.lower().encode("latin-1"),
            prefix_chars=r.prefixChars,
            load_factor=r.loadFactor,
            default_max_tokens=r.defaultMaxTokens,
        )


@dataclass(frozen=True, slots=True)
class Work:
    """One request as the balancer sees it: its weight (estimated tokens, or 1) and its affinity key, if any."""

    tokens: int
    key: bytes | None = None


ONE = Work(1)


class HasTokens(Protocol):
    id: str
    outstanding: int
    tokens: int


B = TypeVar("B", bound=HasTokens)


# -- estimate ---------------------------------------------------------------------------------------------------
def _route(url: bytes) -> str | None:
    """Which generate route a request path is: 'completions', 'chat', 'generate', or None (any other path)."""
    path = url.split(b"?", 1)[0].rstrip(b"/")
    if path.endswith(b"/v1/chat/completions"):
        return "chat"
    if path.endswith(b"/v1/completions"):
        return "completions"
    if path.startswith(b"/v2/models/") and (path.endswith(b"/generate") or path.endswith(b"/generate_stream")):
        return "generate"
    return None


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case) in a request head (``name: value\\r\\n`` lines), or None."""
    low = head.lower()
    at = low.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + 3 + len(name)
    end = head.find(b"\r\n", start)
    value = head[start : end if end >= 0 else len(head)].strip()
    return value or None


def _text_tokens(text: str) -> int:
    return max(1, (len(text.encode("utf-8", "replace")) + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN)


def _prompt(route: str, doc: Mapping[str, Any]) -> tuple[list[Any], str]:
    """The prompts of a body (strings or token-id lists) and the text its prefix key is taken from."""
    if route == "chat":
        parts = []
        for m in doc.get("messages") or ():
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(f"{m.get('role', '')}:{content or ''}\n")
        text = "".join(parts)
        return [text], text
    prompt = doc.get("text_input") if route == "generate" else doc.get("prompt")
    if isinstance(prompt, str):
        return [prompt], prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) for t in prompt):
            return [prompt], " ".join(map(str, prompt))
        first = prompt[0]
        return list(prompt), first if isinstance(first, str) else " ".join(map(str, first or ()))
    return [], ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def estimate(policy: RoutingPolicy, url: bytes, data: bytes, body_size: int) -> Work:
    """The work of one HTTP request: ``data`` is the whole request (head, then ``body_size`` bytes of body).

    A request on another path than the generate routes, or whose body is not a JSON object, weighs 1 (the replica
    answers it, or its error, at once) and has no prefix key. Never raises: a body the replica will refuse is no
    concern of the router's."""
    head = data[: len(data) - body_size] if body_size else data
    session = _header(head, policy.session_header) if policy.affinity == "session" else None
    route = _route(url)
    doc: Any = None
    if route is not None and body_size:
        try:
            doc = orjson.loads(memoryview(data)[len(data) - body_size :])
        except orjson.JSONDecodeError:
            doc = None
    if not isinstance(doc, dict):
        return Work(1, session) if session is not None else ONE
    assert route is not None  # doc is only parsed on a generate route
    prompts, text = _prompt(route, doc)
    key: bytes | None = None
    if policy.affinity == "session":
        user = doc.get("user")
        key = session if session is not None else user.encode() if isinstance(user, str) and user else None
    elif policy.affinity == "prefix" and text:
        key = text[: policy.prefix_chars].encode("utf-8", "replace")
    if not policy.tokens:
        return Work(1, key)
    if route == "generate":
        params = doc.get("parameters")
        wanted = _int(params.get("max_tokens")) if isinstance(params, dict) else None
        wanted = wanted or _int(doc.get("max_tokens")) or COMPLETIONS_DEFAULT
    elif route == "chat":
        wanted = _int(doc.get("max_completion_tokens")) or _int(doc.get("max_tokens")) or policy.default_max_tokens
    else:
        wanted = _int(doc.get("max_tokens")) or COMPLETIONS_DEFAULT
    n = _int(doc.get("n")) or 1
    prompt_tokens = sum(len(p) if isinstance(p, list) else _text_tokens(str(p)) for p in prompts) or 1
    return Work(prompt_tokens + wanted * n * max(1, len(prompts)), key)


# -- choose -----------------------------------------------------------------------------------------------------
_MASK = (1 << 64) - 1


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finalizer: a well-spread 64-bit score from the key's and the replica's hashes."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=4096)  # replica ids come and go over a long life: a bounded cache
def _id_hash(backend_id: str) -> int:
    return _h64(backend_id.encode())


def rendezvous_home(backends: Sequence[B], key: bytes) -> B:
    """The backend with the highest rendezvous score for ``key`` (ties, which need equal 64-bit scores, go to the
    smaller id). ``backends`` must not be empty."""
    k = _h64(key)
    return max(backends, key=lambda b: (_mix(k ^ _id_hash(b.id)), b.id))


def _least(backends: Sequence[B]) -> B:
    return min(backends, key=lambda b: b.tokens)


def _p2c(backends: Sequence[B], rng: Callable[[], float]) -> B:
    n = len(backends)
    if n == 1:
        return backends[0]
    i, j = draw_two(n, rng)
    a, b = backends[i], backends[j]
    return a if a.tokens <= b.tokens else b


def choose(
    backends: Sequence[B],
    work: Work,
    rng: Callable[[], float],
    exclude: Sequence[B] = (),
    load_factor: float = LOAD_FACTOR,
) -> tuple[B | None, str]:
    """The backend for the next try of ``work`` and how it was chosen: ``"home"`` (its affinity key's replica),
    ``"spill"`` (the home was past the load bound: the least loaded instead) or ``"balance"`` (no key: least
    outstanding tokens by power of two choices). The load of a backend is its ``tokens``.

    Backends in ``exclude`` (tried already) are avoided while another is left, as in ``core.pick``; a retry of a
    keyed request goes to the next replica of the key's rendezvous order. (None, "balance") when ``backends`` is
    empty."""
    if not backends:
        return None, "balance"
    if exclude:
        rest = [b for b in backends if b not in exclude]
        if rest:
            backends = rest
    if work.key is None:
        return _p2c(backends, rng), "balance"
    home = rendezvous_home(backends, work.key)
    n = len(backends)
    if n == 1:
        return home, "home"
    total = sum(b.tokens for b in backends) + work.tokens
    if home.tokens * n < load_factor * total:  # home.tokens < load_factor x the average, this request counted
        return home, "home"
    return _least(backends), "spill"
