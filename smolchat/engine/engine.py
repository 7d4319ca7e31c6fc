"""The engine: one SmolVLM model pair in llama.cpp, and the KV cache of one conversation.

A turn renders the conversation with the model's chat template, tokenizes it with libmtmd
(text tokens and image chunks, one chunk per 512 px tile for SmolVLM), keeps the longest
prefix the KV cache already holds (text tokens equal, image chunks with the same pixels),
evaluates only the rest, and samples the answer. A follow-up question about an image that
is already in the conversation therefore never runs the vision encoder again.

Not thread-safe: one thread owns an Engine. Only ``cancel()`` may be called from another
thread.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import llama_cpp.mtmd_cpp as mtmd
import numpy as np

from smolchat import progress
from smolchat.engine import gbnf, native
from smolchat.engine.backends import llama_cpp
from smolchat.engine.chat_template import ChatTemplate, TemplateError
from smolchat.engine.gguf_info import (
    ModelFileError,
    ProjectorInfo,
    TextModelInfo,
    check_pair,
    inspect_projector,
    inspect_text_model,
)
from smolchat.engine.images import DEFAULT_MAX_SIDE, ImageCache, PreparedImage
from smolchat.engine.kept import KeptConversations, KeptState, worth_keeping
from smolchat.engine.prompt import (
    CHATML_TEMPLATE,
    SMOLVLM_CHAT_TEMPLATE,
    Message,
    PromptError,
    Segment,
)
from smolchat.engine.speed import Speed, SpeedLog
from smolchat.engine.structured import AnswerFormatError
from smolchat.engine.tokenize import (
    Chunk,
    ImageUnit,
    TokenizedPrompt,
    Unit,
    common_prefix,
    mtmd_layout,
    text_prompt,
)
from smolchat.engine.types import (
    ContextOverflowError,
    EngineError,
    EngineSettings,
    ModelInfo,
    PrefillResult,
    PromptCount,
    SamplingParams,
    TextDelta,
    TurnEvent,
    TurnResult,
    TurnStats,
    VisionEncoderError,
)
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision.plan import (
    BACKEND_NAMES,
    LLAMA_CPP,
    ONNXRUNTIME,
    OWN_ENCODERS,
    VisionPlan,
    from_cpu_report,
    projector_for,
)
from smolchat.engine.vision.projector_files import LAYOUT, copy_path, layout_only_mmproj
from smolchat.engine.vision.tiles import cut_tiles, normalized

log = logging.getLogger(__name__)

_DECODE_ABORTED = 2
# What the engine reports while it works (``smolchat.progress``).
LOADING_VISION = "Loading the vision projector"
LOADING_ENCODER = "Preparing the vision encoder"
READING_IMAGES = "Reading the images"
_NO_POST_DECODE_CALLBACK = mtmd.mtmd_helper_post_decode_callback(0)  # a NULL function pointer


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def gpu_plan(settings: EngineSettings) -> VisionPlan | None:
    """How a GPU build reads images: on the GPU, faster than any CPU path, so there is
    nothing to measure. None where images are read on the CPU."""
    if not (settings.vision_on_gpu and llama_cpp.llama_supports_gpu_offload()):
        return None
    return VisionPlan(
        LLAMA_CPP,
        "F16",
        settings.n_threads_vision or default_threads(),
        settings.n_threads or default_threads(),
        "GPU build",
    )


def default_plan(settings: EngineSettings) -> VisionPlan:
    """How images are read when the engine is handed no plan, without measuring anything:
    on the GPU of a GPU build; otherwise as the settings say, and where they say "auto",
    libmtmd in the best precision the CPU reports, on its physical cores."""
    s = settings
    backend = LLAMA_CPP if s.vision_backend == "auto" else s.vision_backend
    return gpu_plan(s) or from_cpu_report(
        cpu_report.detect(),
        backend,
        precision=s.vision_precision,
        threads=s.n_threads_vision,
        decode_threads=s.n_threads,
    )


@dataclass
class _EvalCounters:
    reused: int = 0
    evaluated: int = 0
    tiles: int = 0
    tiles_to_read: int = 0  # by this evaluation: those the cache does not hold
    encode_s: float = 0.0
    cancelled: bool = False


class Engine:
    """A loaded model pair. Use as a context manager, or call ``close()``.

    ``plan``: how images are read (see ``smolchat.calibrate`` for the plan measured fastest
    here); None: ``default_plan(settings)``, nothing measured. ``first_tile_s``: an estimate
    of the seconds per image tile with that plan, shown until the first tile is read.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str] | None = None,
        settings: EngineSettings = EngineSettings(),
        *,
        plan: VisionPlan | None = None,
        first_tile_s: float | None = None,
    ) -> None:
        native.route_native_logs()
        self.settings = settings
        self._given_plan = plan
        self._first_tile_s = first_tile_s
        self.text_info: TextModelInfo = inspect_text_model(model_path)
        self.projector_info: ProjectorInfo | None = None
        if mmproj_path is not None:
            self.projector_info = inspect_projector(mmproj_path)
            check_pair(self.text_info, self.projector_info)
        if settings.n_ctx < 64:
            raise EngineError(f"A context of {settings.n_ctx} tokens is too small; use 2048 or more.")

        self._text_model: native.TextModel | None = None
        self._mtmd_ctx = None
        self._frame_ctx = None  # libmtmd laying video frames out as one tile each, made on first use
        self.vision_plan: VisionPlan | None = None
        self._encoder = None  # SmolChat's own encoder (ONNX Runtime or OpenVINO), when it reads images
        self._layout_only = False  # libmtmd loaded a projector without encoder layers
        self._tiles: tuple[str, list[np.ndarray]] | None = None  # one image's tiles, for our own encoder
        self._batch: native.TokenBatch | None = None
        self._abort = native.AbortWatch()
        self._units: list[Unit] = []  # what the KV cache holds, in order
        self._n_past = 0
        self._kept = KeptConversations(settings.kept_conversations_mb * 2**20)
        self._in_operation = False
        self.template_note: str | None = None
        # Images larger than the model's preprocessing size are shrunk to it once, when read:
        # libmtmd would scale them to that size anyway.
        preproc = self.projector_info.preproc_image_size if self.projector_info else None
        self.image_cache = ImageCache(max_side=preproc or DEFAULT_MAX_SIDE)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- loading -------------------------------------------------------------------------

    def _load(self) -> None:
        s = self.settings
        started = time.perf_counter()
        if self.projector_info is not None:
            self.vision_plan = self._given_plan or default_plan(s)
            if self.vision_plan.backend in OWN_ENCODERS:  # before the text model: it may not load here
                progress.report(LOADING_ENCODER)
                self._encoder = self._load_own_encoder()
        n_threads = s.n_threads or (self.vision_plan.decode_threads if self.vision_plan else default_threads())
        self.decode_threads = n_threads
        # flash attention as the settings allow, for the text model where the plan found it faster
        on_cpu = s.n_gpu_layers == 0
        self.text_flash_attn = s.flash_attn and (not on_cpu or not self.vision_plan or self.vision_plan.text_flash_attn)
        try:
            self._text_model = native.TextModel(
                str(self.text_info.path),
                n_ctx=s.n_ctx,
                n_batch=s.n_batch,
                n_threads=n_threads,
                n_threads_batch=s.n_threads_batch or default_threads(),
                n_gpu_layers=s.n_gpu_layers,
                flash_attn=self.text_flash_attn,
            )
        except native.LoadError as e:
            raise ModelFileError(
                self.text_info.path,
                f"could not be loaded: {e}.",
                "The file may be damaged or use an architecture this build does not know; "
                "try another download or format.",
            ) from e
        ctx = self._text_model.ctx
        llama_cpp.llama_set_abort_callback(ctx, self._abort.callback, None)
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._vocab = self._text_model.vocab
        self._batch = native.TokenBatch(s.n_batch)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._end_tokens: list[int] | None = None  # found when first needed
        self._continuations: np.ndarray | None = None  # tokens that continue a UTF-8 character
        self._starts: np.ndarray | None = None

        if self.projector_info is not None:
            progress.report(LOADING_VISION)
            self._load_vision()

        self.template = self._make_template()
        self.speed_log = SpeedLog(self._speed_key())
        if self.vision_plan is not None:
            self.speed_log.start_from(self._first_tile_s)
        log.info(
            "loaded %s%s in %.2f s",
            self.text_info.path.name,
            f" + {self.projector_info.path.name} ({self.vision_plan.describe()})"
            if self.projector_info is not None and self.vision_plan
            else "",
            time.perf_counter() - started,
        )

    def _load_own_encoder(self):
        assert self.projector_info is not None and self.vision_plan is not None
        plan = self.vision_plan
        try:
            if plan.backend == ONNXRUNTIME:
                from smolchat.engine.vision.onnx_encoder import OnnxVisionEncoder

                return OnnxVisionEncoder(self.projector_info.path, threads=plan.threads, precision=plan.precision)
            from smolchat.engine.vision.openvino_encoder import OpenVINOVisionEncoder

            return OpenVINOVisionEncoder(self.projector_info.path, threads=plan.threads, precision=plan.precision)
        except Exception as e:  # the runtimes raise their own kinds; libmtmd can read instead
            raise VisionEncoderError(
                f"{BACKEND_NAMES[plan.backend]} cannot read images with {self.projector_info.path.name} here ({e}). "
                "Choose the llama.cpp vision encoder in the settings."
            ) from e

    def _load_vision(self) -> None:
        s = self.settings
        info = self.projector_info
        assert info is not None and self._text_model is not None and self.vision_plan is not None
        mmproj_path, self._layout_only = info.path, False
        try:
            mmproj_path, self._layout_only = projector_for(info.path, info.file_type, self.vision_plan)
        except OSError as e:  # no room for the copy: the original works too
            log.warning("could not write a copy of %s: %s", info.path.name, e)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = s.vision_on_gpu and llama_cpp.llama_supports_gpu_offload()
        params.n_threads = self.vision_plan.threads
        params.print_timings = False
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if s.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        if s.image_max_tokens is not None:
            params.image_max_tokens = s.image_max_tokens
        if s.image_min_tokens is not None:
            params.image_min_tokens = s.image_min_tokens
        self._mtmd_ctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self._text_model.model, params)
        if not self._mtmd_ctx:
            self._mtmd_ctx = None
            raise ModelFileError(
                info.path,
                "could not be loaded by libmtmd.",
                "The file may be damaged; download it again.",
            )
        if not mtmd.mtmd_support_vision(self._mtmd_ctx):
            raise ModelFileError(info.path, "cannot read images.", "Choose the model's image projector (mmproj).")
        self.vision_mmproj_path = mmproj_path

    def _frames_layout(self, segments: Sequence[Segment]) -> object:
        """libmtmd for video frames: the projector's layout alone (no encoder layers), limited
        to one tile's tokens, so that a tile-sized frame is neither enlarged nor cut. It only
        lays frames out; the projector itself encodes them (libmtmd's chunks carry their
        preprocessed pixels). Made when a conversation first holds a frame."""
        if self._frame_ctx is not None or not any(not isinstance(s, str) and s.one_tile for s in segments):
            return self._frame_ctx
        info = self.projector_info
        assert info is not None and self._text_model is not None
        layout = copy_path(info.path, LAYOUT)
        try:
            if not layout.exists():
                layout_only_mmproj(info.path, layout)
        except OSError as e:  # no room for the copy: the original lays frames out the same way
            log.warning("could not write a copy of %s: %s", info.path.name, e)
            layout = info.path
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = 1
        params.print_timings = False
        params.image_max_tokens = info.tokens_per_tile
        params.image_min_tokens = info.tokens_per_tile
        self._frame_ctx = mtmd.mtmd_init_from_file(str(layout).encode(), self._text_model.model, params) or None
        if self._frame_ctx is None:
            raise EngineError("libmtmd could not prepare to read video frames with this projector.")
        return self._frame_ctx

    def _make_template(self) -> ChatTemplate:
        """The model's own chat template; the family's default where it has none, or where
        its own does not parse or exceeds the rendering bounds (``template_note`` says so)."""
        assert self._text_model is not None
        text_of = self._text_model.token_text
        tokens = dict(
            bos_token=text_of(llama_cpp.llama_vocab_bos(self._vocab)),
            eos_token=text_of(llama_cpp.llama_vocab_eos(self._vocab)),
        )
        default = SMOLVLM_CHAT_TEMPLATE if self.projector_info else CHATML_TEMPLATE
        family = "SmolVLM's" if self.projector_info else "a standard (ChatML)"
        source = self.text_info.chat_template
        if source is None:
            log.warning("%s has no chat template; using a default one", self.text_info.path.name)
            return ChatTemplate(default, **tokens)
        try:
            return ChatTemplate(source, **tokens)
        except TemplateError as e:
            self.template_note = (
                f"{self.text_info.path.name}: {e} SmolChat uses {family} chat template instead; "
                "answers may be worse than with the model's own."
            )
            log.warning("%s", self.template_note)
            return ChatTemplate(default, **tokens)

    def info(self) -> ModelInfo:
        """A snapshot of what this engine is, for other threads."""
        return ModelInfo(
            self.text_info,
            self.projector_info,
            self.vision_plan,
            self.settings,
            self.template,
            self.template_note,
            self.speed,
        )

    @property
    def has_vision(self) -> bool:
        return self._mtmd_ctx is not None

    @property
    def n_ctx(self) -> int:
        return self.settings.n_ctx

    def close(self) -> None:
        """Free the model, the projector and the KV cache. The engine is unusable afterwards.

        Call it from the thread that owns the engine, not while it is evaluating.
        """
        self._abort.trigger()
        self._encoder = self._tiles = None
        if self._frame_ctx is not None:
            mtmd.mtmd_free(self._frame_ctx)
            self._frame_ctx = None
        if self._mtmd_ctx is not None:
            mtmd.mtmd_free(self._mtmd_ctx)
            self._mtmd_ctx = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self._text_model is not None:
            self._text_model.close()
            self._text_model = None
        self._units, self._n_past = [], 0
        self._kept.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cancelling ------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running turn or prefill as soon as possible (from any thread).

        Prompt evaluation and generation stop within a graph node; the vision encoder
        finishes the tile it is on. The partial answer is returned, marked "cancelled".
        """
        self._abort.trigger()

    @contextmanager
    def _operation(self, cancel: threading.Event | None) -> Iterator[threading.Event]:
        if self._text_model is None:
            raise EngineError("The model has been unloaded.")
        if self._in_operation:
            raise EngineError("The engine is still busy with another request.")
        self._in_operation = True
        event = cancel or threading.Event()
        self._abort.watch(event)
        try:
            yield event
        finally:
            self._abort.watch(threading.Event())
            self._in_operation = False

    def reset(self) -> None:
        """Forget the KV cache (the next turn evaluates its whole prompt)."""
        with self._operation(None):
            self._truncate_cache(0, 0)

    # -- turns -----------------------------------------------------------------------------

    def run_turn(
        self,
        messages: Sequence[Message],
        sampling: SamplingParams = SamplingParams(),
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[TurnEvent]:
        """Answer the last message of ``messages``.

        Yields TextDelta events while the answer is generated, then one TurnResult.
        ``cancel`` (or ``engine.cancel()``) stops it; the partial answer is kept.
        """
        started = time.perf_counter()
        with self._operation(cancel) as cancelled:
            counters = _EvalCounters()
            with self._tokenized(messages, add_generation_prompt=True, resume=True) as prompt:
                if prompt.n_pos + 1 > self.n_ctx:
                    raise ContextOverflowError(prompt.n_pos + 1, self.n_ctx)
                if sampling.answer_format is not None:
                    _check_room_for(sampling, self.n_ctx - prompt.n_pos)
                self._evaluate(prompt, len(prompt.units), logits_last=True, counters=counters)
            if counters.cancelled:
                yield TurnResult("", self._stats(started, None, None, 0, prompt, counters, "cancelled"))
                return
            yield from self._generate(sampling, started, prompt, counters, cancelled)

    def _generate(
        self,
        sampling: SamplingParams,
        started: float,
        prompt: TokenizedPrompt,
        counters: _EvalCounters,
        cancelled: threading.Event,
    ) -> Iterator[TurnEvent]:
        assert self._text_model is not None and self._batch is not None
        ctx = self._text_model.ctx
        assert ctx is not None  # a model loaded with its context, not its vocabulary only
        answer_format = sampling.answer_format
        # an answer in a format is followed here, to be closed in time if the tokens run out
        parse = answer_format.grammar.start() if answer_format is not None else None
        limit = sampling.max_tokens if parse is None else min(sampling.max_tokens, self.n_ctx - self._n_past)
        stops = tuple(s for s in sampling.stop if s) if parse is None else ()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted = "", 0
        generated = 0
        first_at: float | None = None
        last_at = started
        finish = "length"
        if sampling.ignore_eos and self._end_tokens is None:
            self._end_tokens = native.end_of_turn_tokens(self._vocab)
        grammar = answer_format.grammar_text if answer_format is not None else None
        try:
            sampler = native.SamplerChain(self._vocab, sampling, self._end_tokens or (), grammar)
        except ValueError as e:
            raise AnswerFormatError(f"The answer's format cannot be used: {e}.") from None
        with sampler:
            while generated < limit:
                if cancelled.is_set():
                    finish = "cancelled"
                    break
                if parse is None:
                    token = sampler.sample(ctx)
                else:  # whole UTF-8 characters only: llama.cpp's grammar would take broken ones
                    token = sampler.sample(ctx, *self._whole_characters(decoder))
                last_at = time.perf_counter()
                if token < 0:  # nothing the grammar allows is left to pick: finish the answer
                    assert parse is not None
                    ending, n_tokens = self._closing(decoder, parse)
                    text, generated = text + ending, generated + n_tokens
                    break
                if first_at is None:
                    first_at = last_at
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                piece = decoder.decode(native.token_piece(self._vocab, token, self._piece_buf))
                if parse is not None:
                    after = parse.advance(piece)
                    if after is None:  # never expected: llama.cpp's grammar allowed it
                        log.warning("the answer left its grammar at %r; it is no longer followed", piece)
                        parse = None
                    elif generated + 1 + _utf8_size(after.completion()) > limit:
                        # the token would leave too few to finish: finish instead (its bytes
                        # bound its tokens: llama.cpp never samples a token without text)
                        ending, n_tokens = self._closing(decoder, parse)
                        text, generated = text + ending, generated + n_tokens
                        break
                    else:
                        parse = after
                generated += 1
                text += piece
                cut = _find_stop(text, stops, emitted)
                if cut is not None:
                    text = text[:cut]
                    finish = "stop"
                    break
                safe = len(text) - _held_back(text, stops)
                if safe > emitted:
                    yield TextDelta(text[emitted:safe])
                    emitted = safe
                if generated >= limit:
                    break
                if self._n_past >= self.n_ctx:
                    finish = "context"
                    break
                rc = llama_cpp.llama_decode(ctx, self._batch.fill([token], self._n_past, True))
                if rc != 0:
                    self._truncate_cache(len(self._units), self._n_past)
                    if rc == _DECODE_ABORTED or cancelled.is_set():
                        finish = "cancelled"
                        break
                    raise EngineError(f"llama.cpp failed while generating (code {rc}).")
                self._units.append(token)
                self._n_past += 1
        if finish != "stop" or not stops:
            text += decoder.decode(b"", final=True)
        if len(text) > emitted:
            yield TextDelta(text[emitted:])
        stats = self._stats(started, first_at, last_at, generated, prompt, counters, finish)
        if finish != "cancelled" and stats.ttft_s is not None:
            self.speed_log.record(
                tiles=counters.tiles,
                encode_s=counters.encode_s,
                evaluated=counters.evaluated,
                prompt_s=stats.ttft_s,
                decode_tok_s=stats.decode_tok_s,
            )
        yield TurnResult(text, stats)

    def _closing(self, decoder: codecs.IncrementalDecoder, parse: gbnf.Parse) -> tuple[str, int]:
        """The end of an answer in a format, written here rather than sampled, and its tokens."""
        flushed = decoder.decode(b"", final=True)  # the rest of a character: its tokens are counted
        closing = (parse.advance(flushed) or parse).completion()
        return flushed + closing, self.count_tokens(closing) if closing else 0

    def _whole_characters(self, decoder: codecs.IncrementalDecoder):
        """What the sampler may pick next so that the answer stays valid UTF-8: where a
        character is begun, only its continuation; otherwise none; and no token that would
        break a character some other way."""
        if self._continuations is None:
            self._continuations = native.continuation_tokens(self._vocab)
            self._starts = ~self._continuations
        state = decoder.getstate()

        def acceptable(token: int) -> bool:
            probe = codecs.getincrementaldecoder("utf-8")()
            probe.setstate(state)
            try:
                probe.decode(native.token_piece(self._vocab, token, self._piece_buf))
            except UnicodeDecodeError:
                return False
            return True

        return (self._continuations if state[0] else self._starts), acceptable

    def _stats(
        self,
        started: float,
        first_at: float | None,
        last_at: float | None,
        generated: int,
        prompt: TokenizedPrompt,
        counters: _EvalCounters,
        finish: str,
    ) -> TurnStats:
        ended = time.perf_counter()
        tpot = None
        if first_at is not None and last_at is not None and generated > 1:
            tpot = (last_at - first_at) / (generated - 1)
        return TurnStats(
            ttft_s=None if first_at is None else first_at - started,
            tpot_s=tpot,
            e2e_s=ended - started,
            decode_tok_s=None if not tpot else 1.0 / tpot,
            prompt_tokens=prompt.n_pos,
            image_tokens=prompt.image_tokens,
            reused_tokens=counters.reused,
            evaluated_tokens=counters.evaluated,
            generated_tokens=generated,
            image_tiles_encoded=counters.tiles,
            encode_s=counters.encode_s,
            finish_reason=finish,
            images=prompt.pictures,
            frames=prompt.frames,
        )

    # -- prefill ---------------------------------------------------------------------------

    def prefill(self, messages: Sequence[Message], *, cancel: threading.Event | None = None) -> PrefillResult:
        """Evaluate ``messages`` ahead of time, up to and including the last message's images.

        ``messages`` ends with the message being written. Its text may still change, so only
        what comes before that text is evaluated; a turn sent later reuses the work.
        """
        started = time.perf_counter()
        with self._operation(cancel):
            counters = _EvalCounters()
            with self._tokenized(messages, add_generation_prompt=False, resume=True) as prompt:
                stable = self._stable_prefix(messages, prompt)
                if prompt.n_pos + 1 > self.n_ctx:
                    raise ContextOverflowError(prompt.n_pos + 1, self.n_ctx)
                self._evaluate(prompt, stable, logits_last=False, counters=counters)
            if not counters.cancelled:
                self.speed_log.record(
                    tiles=counters.tiles,
                    encode_s=counters.encode_s,
                    evaluated=counters.evaluated,
                    prompt_s=time.perf_counter() - started,
                    decode_tok_s=None,
                )
            return PrefillResult(
                prompt_tokens=self._n_past,
                reused_tokens=counters.reused,
                evaluated_tokens=counters.evaluated,
                image_tiles_encoded=counters.tiles,
                encode_s=counters.encode_s,
                elapsed_s=time.perf_counter() - started,
                cancelled=counters.cancelled,
            )

    def _stable_prefix(self, messages: Sequence[Message], prompt: TokenizedPrompt) -> int:
        """How many units of ``prompt`` will not change while the last message is written."""
        stable = prompt.last_image_end() if messages and messages[-1].images else 0
        if len(messages) > 1:
            with self._tokenized(messages[:-1], add_generation_prompt=False, pixels=False) as history:
                stable = max(stable, common_prefix(history.units, prompt.units))
        return stable

    # -- tokenizing ------------------------------------------------------------------------

    def _resolve_images(self, messages: Sequence[Message]) -> list[Message]:
        resolved = []
        for m in messages:
            if not m.images:
                resolved.append(m)
                continue
            if not self.has_vision:
                raise EngineError(
                    "This model was loaded without a vision projector (mmproj), so it cannot "
                    "read images. Load the model together with its mmproj file."
                )
            content = tuple(
                part if isinstance(part, (str, PreparedImage)) else self.image_cache.get(part) for part in m.content
            )
            resolved.append(Message(m.role, content))
        return resolved

    @contextmanager
    def _tokenized(
        self, messages: Sequence[Message], *, add_generation_prompt: bool, pixels: bool = True, resume: bool = False
    ) -> Iterator[TokenizedPrompt]:
        """The prompt's chunks. With ``pixels=False`` only their layout (nothing to evaluate);
        with ``resume``, the KV cache is first made the one closest to it (see ``kept``)."""
        segments = self.template.render(self._resolve_images(messages), add_generation_prompt=add_generation_prompt)
        if self._mtmd_ctx is None:
            assert self._text_model is not None
            (text,) = segments
            assert isinstance(text, str)  # without a projector the template renders text only
            prompt = text_prompt(self._text_model.tokenize(text, add_bos=True))
            if resume:
                self._resume_closest(prompt.units)
            yield prompt
            return
        # First lay the prompt out with placeholder images (sizes only: no pixel work), then
        # give real pixels only to the images the KV cache does not hold yet.
        frame_ctx = self._frames_layout(segments)
        with mtmd_layout(self._mtmd_ctx, segments, frozenset(), frame_ctx) as layout:
            if resume:
                self._resume_closest(layout.units)
            needed = layout.image_ids_from(common_prefix(self._units, layout.units))
            if not pixels or not needed or not self._libmtmd_reads:
                yield layout
                return
        with mtmd_layout(self._mtmd_ctx, segments, needed, frame_ctx) as prompt:
            if prompt.units != layout.units:
                raise EngineError("libmtmd laid an image out differently from its placeholder.")
            yield prompt

    @property
    def _libmtmd_reads(self) -> bool:
        """Whether libmtmd may encode images, and so needs their pixels. With a layout-only
        projector our own encoder reads them all, from pixels it cuts itself: libmtmd's own
        preprocessing (0.15 s and 40 MB of float tiles for a 1024x768 photo) would go unused."""
        return self._encoder is None or not self._layout_only

    # -- evaluating ------------------------------------------------------------------------

    def _resume_closest(self, units: Sequence[Unit]) -> None:
        """Make the live KV cache the one that shares the most with ``units``: a kept
        conversation that shares more than the live one is restored, and the live one is
        kept if leaving it would lose much."""
        if self._kept.budget_bytes <= 0:
            return
        live = common_prefix(self._units, units)
        key, shared = self._kept.closest(units)
        restoring = self._kept.take(key) if key is not None and shared > live else None
        if live < len(self._units) and worth_keeping(self._units, units):
            self._keep_live()
        if restoring is not None:
            self._restore(restoring)

    def _keep_live(self) -> None:
        assert self._text_model is not None
        ctx = self._text_model.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if not self._kept.fits(size):
            return
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, data, size, 0)
        if written:
            self._kept.keep(KeptState(tuple(self._units), self._n_past, bytes(data)[:written]))

    def _restore(self, state: KeptState) -> None:
        assert self._text_model is not None
        self._truncate_cache(0, 0)
        data = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if llama_cpp.llama_state_seq_set_data(self._text_model.ctx, data, len(state.data), 0):
            self._units, self._n_past = list(state.units), state.n_past
        else:  # the cache stays empty: the prompt is evaluated whole
            log.warning("a kept conversation could not be restored")
            self._truncate_cache(0, 0)

    def _truncate_cache(self, n_units: int, n_pos: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, 0, n_pos, -1)
        del self._units[n_units:]
        self._n_past = n_pos

    def _evaluate(self, prompt: TokenizedPrompt, stop_unit: int, *, logits_last: bool, counters: _EvalCounters) -> None:
        """Bring the KV cache to ``prompt.units[:stop_unit]``, evaluating only what is new."""
        matched = min(common_prefix(self._units, prompt.units), stop_unit)
        if logits_last and matched == stop_unit and stop_unit > 0:
            matched -= 1  # the last token is evaluated again: its logits start the answer
        if logits_last and (stop_unit == 0 or isinstance(prompt.units[stop_unit - 1], ImageUnit)):
            raise PromptError("The prompt must end with text for the model to answer.")
        matched_pos = prompt.positions(matched)
        self._truncate_cache(matched, matched_pos)
        counters.reused = matched_pos
        assert self._text_model is not None and self._batch is not None
        ctx = self._text_model.ctx
        n_batch = self._batch.capacity
        tiles = sum(
            1
            for c in prompt.chunks
            if c.tokens is None and max(c.first_unit, matched) < min(c.first_unit + c.n_units, stop_unit)
        )
        counters.tiles_to_read = tiles
        if tiles:
            progress.report(READING_IMAGES, 0, tiles)
        for chunk in prompt.chunks:
            start = max(chunk.first_unit, len(self._units))
            end = min(chunk.first_unit + chunk.n_units, stop_unit)
            if start >= end:
                continue
            if self._abort.is_set():
                counters.cancelled = True
                return
            if chunk.tokens is not None:
                tokens = chunk.tokens[start - chunk.first_unit : end - chunk.first_unit]
                for b in range(0, len(tokens), n_batch):
                    piece = tokens[b : b + n_batch]
                    last = logits_last and start + b + len(piece) == stop_unit
                    rc = llama_cpp.llama_decode(ctx, self._batch.fill(piece, self._n_past, last))
                    if rc != 0:
                        self._fail_or_cancel(rc, counters)
                        return
                    self._units.extend(piece)
                    self._n_past += len(piece)
                    counters.evaluated += len(piece)
            else:
                self._evaluate_image(prompt, chunk, counters)
                if counters.cancelled:
                    return

    def _evaluate_image(self, prompt: TokenizedPrompt, chunk: Chunk, counters: _EvalCounters) -> None:
        unit = prompt.units[chunk.first_unit]
        assert self._text_model is not None and self._batch is not None
        began = time.perf_counter()
        embd_ptr, _keep = self._encode_tile(prompt, chunk)
        counters.encode_s += time.perf_counter() - began
        counters.tiles += 1
        progress.report(READING_IMAGES, counters.tiles, counters.tiles_to_read)
        if self._abort.is_set():  # the encoder itself cannot be interrupted: check after it
            counters.cancelled = True
            return
        new_n_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd_ctx,
            self._text_model.ctx,
            chunk.image_ptr,
            embd_ptr,
            self._n_past,
            0,
            self._batch.capacity,
            ctypes.byref(new_n_past),
            _NO_POST_DECODE_CALLBACK,
            None,
        )
        if rc != 0:
            self._fail_or_cancel(rc, counters)
            return
        self._units.append(unit)
        self._n_past = new_n_past.value
        counters.evaluated += chunk.n_pos

    def _encode_tile(self, prompt: TokenizedPrompt, chunk: Chunk) -> tuple[object, object]:
        """Run the vision encoder on one tile: a float pointer to its embeddings, and what
        keeps them alive (the pointer is valid until the next tile is encoded)."""
        embeddings = self._own_embeddings(prompt, chunk) if self._encoder is not None else None
        if embeddings is not None:
            return embeddings.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), embeddings
        if self._layout_only:  # never encode with a projector that has no encoder layers
            encoder = self.vision_plan.backend if self.vision_plan else "its own encoder"
            raise EngineError(
                f"SmolChat could not read this image with {encoder}. "
                "Choose the llama.cpp vision encoder in the settings."
            )
        if mtmd.mtmd_encode_chunk(self._mtmd_ctx, chunk.image_ptr) != 0:
            raise EngineError("The vision encoder failed on this image.")
        return mtmd.mtmd_get_output_embd(self._mtmd_ctx), None

    def count_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> PromptCount:
        """The context a conversation takes, laid out as it would be evaluated but without
        any pixel work or evaluation."""
        with self._tokenized(messages, add_generation_prompt=add_generation_prompt, pixels=False) as layout:
            tiles = sum(1 for chunk in layout.chunks if chunk.tokens is None)
            return PromptCount(layout.n_pos, layout.image_tokens, tiles)

    @property
    def loaded(self) -> bool:
        return self._text_model is not None

    @property
    def speed(self) -> Speed:
        """This computer's measured speed with this model and these settings."""
        return self.speed_log.speed

    def _speed_key(self) -> str:
        files = [self.text_info] + ([self.projector_info] if self.projector_info else [])
        plan = self.vision_plan.describe() if self.vision_plan else "text only"
        if not self.text_flash_attn:
            plan += ", text without flash attention"
        return " | ".join(
            [*(f"{f.path.name}:{f.size_bytes}" for f in files), plan, f"gpu layers {self.settings.n_gpu_layers}"]
        )

    def count_tokens(self, text: str, add_bos: bool = False) -> int:
        """Tokens of ``text`` in this model's vocabulary, special tokens parsed. Only reads the
        vocabulary: safe from any thread."""
        assert self._text_model is not None
        return len(self._text_model.tokenize(text, add_bos=add_bos))

    def encode_image(self, image: str | os.PathLike[str] | PreparedImage) -> np.ndarray:
        """The embeddings the vision encoder makes of ``image``, tile by tile (tiles, tokens,
        width), in the order the model reads them. The KV cache is not touched."""
        if not self.has_vision:
            raise EngineError("This model was loaded without a vision projector (mmproj).")
        if not isinstance(image, PreparedImage):
            image = self.image_cache.get(image)
        real_ids = frozenset([image.content_id]) if self._libmtmd_reads else frozenset()
        frame_ctx = self._frames_layout([image])
        with self._operation(None), mtmd_layout(self._mtmd_ctx, [image], real_ids, frame_ctx) as layout:
            tiles = []
            for chunk in layout.chunks:
                if chunk.image_ptr is None:
                    continue
                ptr, _keep = self._encode_tile(layout, chunk)
                n = chunk.n_image_tokens * self.text_info.n_embd
                tiles.append(np.ctypeslib.as_array(ptr, shape=(n,)).reshape(chunk.n_image_tokens, -1).copy())
        return np.stack(tiles)

    def _own_embeddings(self, prompt: TokenizedPrompt, chunk: Chunk) -> np.ndarray | None:
        """One tile's embeddings from our own encoder; None where libmtmd should read it instead."""
        assert self._encoder is not None
        unit = prompt.units[chunk.first_unit]
        image = prompt.images.get(unit.content_id)
        if image is None:
            return None
        if self._tiles is None or self._tiles[0] != unit.content_id:
            geometry = replace(
                self._encoder.geometry,
                max_tokens=self.settings.image_max_tokens,
                min_tokens=self.settings.image_min_tokens,
            )
            pixels = np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)
            # a frame is its own tile (libmtmd's one-tile layout leaves a tile-sized frame as it is)
            self._tiles = (unit.content_id, [pixels] if image.one_tile else cut_tiles(pixels, geometry))
        tiles = self._tiles[1]
        # A picture attached twice has its tiles twice: ImageUnit.index runs on across them.
        n_chunks = sum(1 for u in prompt.units if isinstance(u, ImageUnit) and u.content_id == unit.content_id)
        if n_chunks % len(tiles) or chunk.n_image_tokens != self._encoder.tokens_per_tile:
            self._tiles = None
            if self._layout_only:  # libmtmd holds no encoder layers to fall back on
                raise EngineError(
                    "This image could not be read: SmolChat and libmtmd cut it into tiles "
                    "differently. Choose the llama.cpp vision encoder in the settings."
                )
            log.warning("libmtmd cut %s differently; reading it with libmtmd", image.source or "an image")
            return None
        tile = unit.index % len(tiles)
        # Normalized one at a time: a photo's float tiles would take 40 MB at once.
        embeddings = self._encoder.encode(normalized(tiles[tile : tile + 1], self._encoder.mean, self._encoder.std))
        if tile == len(tiles) - 1:
            self._tiles = None  # the overview comes last: this image is done
        return embeddings

    def _fail_or_cancel(self, rc: int, counters: _EvalCounters) -> None:
        self._truncate_cache(len(self._units), self._n_past)  # drop a half-evaluated batch
        if rc == _DECODE_ABORTED or self._abort.is_set():
            counters.cancelled = True
            return
        if rc == 1:
            raise ContextOverflowError(self._n_past + 1, self.n_ctx)
        raise EngineError(f"llama.cpp failed while reading the prompt (code {rc}).")


def _check_room_for(sampling: SamplingParams, room: int) -> None:
    """An answer in a format must be able to finish: refuse before reading the prompt if
    even its shortest form does not fit."""
    assert sampling.answer_format is not None
    if sampling.ignore_eos:
        raise AnswerFormatError("An answer in a format ends when the format is complete: it cannot ignore the end.")
    shortest = _utf8_size(sampling.answer_format.shortest)
    left = min(sampling.max_tokens, room)
    if shortest > left:
        raise AnswerFormatError(
            f"The shortest answer in this format takes up to {shortest:,} tokens, and {left:,} are left: "
            "raise max_tokens or the context size, or shorten the conversation or the schema."
        )


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _find_stop(text: str, stops: tuple[str, ...], emitted: int) -> int | None:
    """Where the earliest stop string starts in the not yet emitted text, if any."""
    if not stops:
        return None
    window_start = max(0, emitted - max(len(s) for s in stops))
    hits = [i for i in (text.find(s, window_start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


__all__ = ["Engine", "default_plan", "default_threads", "gpu_plan"]
