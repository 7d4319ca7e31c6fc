"""Thin wrappers over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

What the engine needs: a text model with its context, its tokenizer, native logs routed
into Python logging, an abort flag that llama.cpp polls while it computes, a sampler chain
and a token batch. llama-cpp-python's high-level ``Llama`` is not used: it compiles every
chat template in the file with an unbounded Jinja (a template that does not parse fails the
load), and allocates arrays the engine never reads.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence

import llama_cpp.mtmd_cpp as mtmd
import numpy as np

from smolchat import progress
from smolchat.engine import backends
from smolchat.engine.backends import llama_cpp
from smolchat.engine.types import SamplingParams

log = logging.getLogger("smolchat.llama")

# ggml log levels (ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT) -> logging levels.
# llama.cpp's INFO lines describe every tensor and buffer it allocates: useful when
# debugging, noise for a user, so they become DEBUG.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_GGML_LOG_CONT = 5


class _NativeLogRouter:
    """Collects llama.cpp / libmtmd log fragments into whole lines for Python logging."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = ""
        self._level = logging.DEBUG
        # keep a reference: llama.cpp holds only the C function pointer
        self.callback = llama_cpp.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        try:
            piece = text.decode("utf-8", errors="replace") if text else ""
            with self._lock:
                if level != _GGML_LOG_CONT:
                    self._level = _LEVELS.get(level, logging.DEBUG)
                self._pending += piece
                if not self._pending.endswith("\n"):
                    return
                lines, self._pending = self._pending, ""
                level_now = self._level
            if log.isEnabledFor(level_now):
                for line in lines.rstrip("\n").splitlines():
                    log.log(level_now, "%s", line)
        except Exception:  # never let an exception cross into C
            pass


_router: _NativeLogRouter | None = None
_router_lock = threading.Lock()


def route_native_logs() -> None:
    """Send llama.cpp's and libmtmd's logs to the ``smolchat.llama`` logger, not stderr."""
    global _router
    with _router_lock:
        if _router is None:
            _router = _NativeLogRouter()
        llama_cpp.llama_log_set(_router.callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(_router.callback, ctypes.c_void_p(0))


class AbortWatch:
    """The cancel request llama.cpp polls between graph nodes while it evaluates a batch.

    Each operation watches its own ``threading.Event``; setting it (directly, or through
    ``trigger`` from any thread) makes the running ``llama_decode`` return 2 (aborted)
    within a node or two, and the context stays usable.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.callback = llama_cpp.ggml_abort_callback(self._poll)

    def _poll(self, _data: ctypes.c_void_p) -> bool:
        return self._event.is_set()

    def watch(self, event: threading.Event) -> None:
        self._event = event

    def trigger(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


_backend_ready = False
_backend_lock = threading.Lock()


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


LOADING_TEXT = "Loading the text model"


def _report_loading(fraction: float, _user_data: object) -> bool:
    progress.report(LOADING_TEXT, fraction, 1.0)
    return True  # go on loading


class TextModel:
    """A text GGUF loaded in llama.cpp: its weights (or only its vocabulary) and, unless
    ``vocab_only``, a context to evaluate in. Free it with ``close()``, from the thread that
    uses it. Returns None-checked handles: a file llama.cpp refuses raises ``LoadError``."""

    def __init__(
        self,
        path: str,
        *,
        vocab_only: bool = False,
        n_gpu_layers: int = 0,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_threads: int = 1,
        n_threads_batch: int = 1,
        flash_attn: bool = True,
    ) -> None:
        _init_backend()
        route_native_logs()
        self.model = self.ctx = None
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers  # INT32_MAX: every layer
        params.use_extra_bufts = backends.extra_weight_layouts_safe()
        if not vocab_only:  # llama.cpp says how far it has read the weights
            report = llama_cpp.llama_progress_callback(_report_loading)
            params.progress_callback = report  # kept alive by ``report`` until the load returns
        self.model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
        if not self.model:
            self.model = None
            raise LoadError("llama.cpp could not load the model")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        if vocab_only:
            return
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = n_ctx
        context.n_batch = context.n_ubatch = n_batch
        context.n_threads, context.n_threads_batch = n_threads, n_threads_batch
        context.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.ctx = llama_cpp.llama_init_from_model(self.model, context)
        if not self.ctx:
            self.ctx = None
            self.close()
            raise LoadError("llama.cpp could not make a context for the model (out of memory?)")

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokens of ``text``, special tokens (``<|im_start|>``...) parsed."""
        data = text.encode("utf-8")
        buffer = (llama_cpp.llama_token * (len(data) + 8))()  # never more tokens than bytes, plus BOS
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, len(buffer), add_bos, True)
        if n < 0:
            raise LoadError(f"llama.cpp could not tokenize the text ({n})")
        return buffer[:n]

    def token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode(errors="replace") if token >= 0 else ""

    def close(self) -> None:
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None


class LoadError(RuntimeError):
    """llama.cpp refused a file or ran out of memory; the engine says which file."""


_TRIES = 8
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data


def _token_array(data: np.ndarray):
    """A llama_token_data_array over ``data`` (which must outlive it)."""
    array = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), size=len(data), selected=-1, sorted=False
    )
    return ctypes.pointer(array)


class SamplerChain:
    """A llama.cpp sampler chain built from SamplingParams."""

    def __init__(
        self,
        vocab: llama_cpp.llama_vocab_p,
        params: SamplingParams,
        end_tokens: Sequence[int] = (),
        grammar: str | None = None,
    ) -> None:
        """``end_tokens``: the tokens that end a turn, banned when ``params.ignore_eos``;
        ``grammar``: GBNF that every answer follows."""
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda s: llama_cpp.llama_sampler_chain_add(self._chain, s)  # noqa: E731
        self._grammar = None
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self._grammar:  # llama.cpp said why in its log
                self.close()
                raise ValueError("llama.cpp could not read the answer's grammar")
            self._candidates = np.empty(n_vocab, dtype=_TOKEN_DATA)
            self._one = np.empty(1, dtype=_TOKEN_DATA)
        if params.ignore_eos:
            eog = list(end_tokens)
            if eog:
                biases = (llama_cpp.llama_logit_bias * len(eog))()
                for i, token in enumerate(eog):
                    biases[i].token = token  # type: ignore[assignment]  # declared c_int32; ctypes takes an int
                    biases[i].bias = float("-inf")
                add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(eog), biases))
        if params.repeat_penalty != 1.0 and params.repeat_last_n != 0:
            add(llama_cpp.llama_sampler_init_penalties(n_vocab, params.repeat_last_n, params.repeat_penalty, 0.0, 0.0))
        if params.temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(params.temperature))
            seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
            add(llama_cpp.llama_sampler_init_dist(seed))

    def sample(
        self,
        ctx: llama_cpp.llama_context_p,
        allowed: np.ndarray | None = None,
        acceptable: Callable[[int], bool] | None = None,
    ) -> int:
        """Pick a token from the last computed logits (and record it for the penalties).

        With a grammar, also: only tokens where ``allowed`` is true, and none that
        ``acceptable`` refuses (asked before the token is recorded; a few tries); -1 when
        no such token is found."""
        if self._grammar is None:
            return llama_cpp.llama_sampler_sample(self._chain, ctx, -1)
        # As llama.cpp's own tools do: sample freely, and only if the grammar refuses that
        # token, sample again among the tokens it allows (checking all ~50k costs ~8 ms).
        model = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(len(self._candidates),))
        # a copy: refused tokens are ruled out here, the model's own logits are left as they are
        logits = model.copy() if allowed is None else np.where(allowed, model, -np.inf).astype(np.float32)
        for _ in range(_TRIES):
            token = self._pick(self._chain, logits)
            if token < 0 or not self._grammar_allows(token):
                token = self._pick(self._grammar, logits, then=self._chain)  # allowed by construction
            if token < 0:
                return -1
            if acceptable is None or acceptable(token):
                break
            logits[token] = -np.inf
        else:
            return -1  # nothing the grammar allows is left (llama.cpp aborts on a token it refuses)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _grammar_allows(self, token: int) -> bool:
        one = self._one
        one["id"], one["logit"], one["p"] = token, 0.0, 0.0
        llama_cpp.llama_sampler_apply(self._grammar, _token_array(one))
        return bool(one["logit"][0] != -np.inf)

    def _pick(self, first, logits: np.ndarray, then=None) -> int:
        candidates = self._candidates
        candidates["id"] = np.arange(len(candidates), dtype=np.int32)
        candidates["logit"] = logits
        candidates["p"] = 0.0
        array = _token_array(candidates)
        for sampler in (first, then) if then is not None else (first,):
            llama_cpp.llama_sampler_apply(sampler, array)
        chosen = array.contents
        if not 0 <= chosen.selected < chosen.size or chosen.data[chosen.selected].logit == -np.inf:
            return -1  # every candidate was ruled out
        return int(candidates["id"][chosen.selected])

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __enter__(self) -> SamplerChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TokenBatch:
    """A reusable llama_batch for one sequence."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batch = llama_cpp.llama_batch_init(capacity, 0, 1)

    def fill(self, tokens: list[int], first_pos: int, logits_last: bool) -> llama_cpp.llama_batch:
        b = self._batch
        n = len(tokens)
        assert 0 < n <= self.capacity
        b.n_tokens = n
        for i, token in enumerate(tokens):
            b.token[i] = token
            b.pos[i] = first_pos + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = False
        b.logits[n - 1] = logits_last
        return b

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None


def continuation_tokens(vocab: llama_cpp.llama_vocab_p) -> np.ndarray:
    """Which tokens' text starts with a UTF-8 continuation byte (the rest of a character
    begun by the token before)."""
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    buf = ctypes.create_string_buffer(256)
    first = [token_piece(vocab, t, buf)[:1] for t in range(n_vocab)]
    return np.array([bool(b) and 0x80 <= b[0] <= 0xBF for b in first], dtype=bool)


def end_of_turn_tokens(vocab: llama_cpp.llama_vocab_p) -> list[int]:
    """Every token that ends generation (a scan of the vocabulary: ~30 ms for 49k tokens)."""
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    return [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def token_piece(vocab: llama_cpp.llama_vocab_p, token: int, buf: ctypes.Array) -> bytes:
    """The bytes a token stands for (control tokens render as nothing)."""
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:  # buffer too small: -n is the size needed
        bigger = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, bigger, len(bigger), 0, False)
        return bigger.raw[:n]
    return buf.raw[:n]
