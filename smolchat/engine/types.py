"""What the engine takes and gives: settings, sampling, events, results, snapshots, errors.

Plain values that import without llama.cpp, so settings, the store, the budget and the
window can use them before (or without) a model being loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smolchat.errors import SmolChatError

if TYPE_CHECKING:
    from smolchat.engine.chat_template import ChatTemplate
    from smolchat.engine.gguf_info import ProjectorInfo, TextModelInfo
    from smolchat.engine.speed import Speed
    from smolchat.engine.structured import JsonFormat
    from smolchat.engine.vision.plan import VisionPlan


class EngineError(SmolChatError):
    """The engine could not do what was asked; the message says why."""


class RequestError(EngineError):
    """What was asked cannot be done as asked (the request's doing, not the engine's): a
    conversation too long for the context, a prompt the template refuses, an answer format
    that cannot fit."""


class ContextOverflowError(RequestError):
    """The conversation does not fit in the context window."""

    def __init__(self, needed: int, n_ctx: int) -> None:
        self.needed = needed
        self.n_ctx = n_ctx
        super().__init__(
            f"This conversation needs {needed:,} tokens but the context holds {n_ctx:,}. "
            "Start a new chat, remove images or old messages, or raise the context size."
        )

    def __reduce__(self):
        return (type(self), (self.needed, self.n_ctx))


class VisionEncoderError(EngineError):
    """The vision encoder of the plan cannot run here (OpenVINO or ONNX Runtime failing to load, say)."""


@dataclass(frozen=True)
class EngineSettings:
    n_ctx: int = 4096
    n_gpu_layers: int = 0  # -1: all layers
    n_threads: int | None = None  # generation; None: the fastest count measured here
    n_threads_batch: int | None = None  # prompt evaluation; None: every available core
    flash_attn: bool = True  # allowed: libmtmd always uses it, the text model where the plan found it faster
    n_batch: int = 512
    image_max_tokens: int | None = None  # cap on an image's token grid (None: the model's own)
    image_min_tokens: int | None = None
    vision_on_gpu: bool = True  # only matters when llama.cpp was built with a GPU backend
    # How images are read; "auto"/None: what measured fastest on this computer (see
    # smolchat.calibrate), or where nothing is measured, what the CPU report suggests.
    vision_backend: str = "auto"  # "onnxruntime", "openvino" or "llama.cpp"
    # "BF16", "F16", "Q8_0" (llama.cpp's weights), "INT8", "F32" (ONNX Runtime), "BF16", "F32",
    # "INT8" (OpenVINO); "exact": the fastest that is not 8-bit
    vision_precision: str = "auto"
    n_threads_vision: int | None = None
    # How clips become frames (where they do: beside the engine, which reads frames as given)
    video_fps: float = 1.0
    video_max_frames: int = 16
    # Host memory for the KV caches of conversations left for another (0: none kept)
    kept_conversations_mb: int = 256


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. temperature <= 0 means always the most likely token."""

    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    # Never end the answer early (benchmarks need exactly max_tokens generated tokens)
    ignore_eos: bool = False
    # An answer in JSON that follows this format (stop sequences do not apply to it)
    answer_format: JsonFormat | None = None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, as it is generated."""

    text: str


@dataclass(frozen=True)
class TurnStats:
    ttft_s: float | None  # start of the turn to the first generated token
    tpot_s: float | None  # mean time per output token after the first
    e2e_s: float  # the whole turn
    decode_tok_s: float | None  # 1 / tpot
    prompt_tokens: int  # every position of the prompt
    image_tokens: int  # of which image embeddings
    reused_tokens: int  # taken from the KV cache as they were
    evaluated_tokens: int  # evaluated in this turn
    generated_tokens: int
    image_tiles_encoded: int  # vision encoder runs in this turn
    encode_s: float  # time in the vision encoder
    finish_reason: str  # "stop", "length", "context" (window full) or "cancelled"
    images: int = 0  # images in the prompt (photos and document pages)
    frames: int = 0  # video frames in it

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TurnResult:
    text: str
    stats: TurnStats


@dataclass(frozen=True)
class PrefillResult:
    prompt_tokens: int  # positions now in the KV cache
    reused_tokens: int
    evaluated_tokens: int
    image_tiles_encoded: int
    encode_s: float
    elapsed_s: float
    cancelled: bool


@dataclass(frozen=True)
class PromptCount:
    positions: int  # context positions the prompt takes: text tokens and image embeddings
    image_tokens: int  # of which image embeddings
    image_tiles: int


TurnEvent = TextDelta | TurnResult


@dataclass(frozen=True)
class ModelInfo:
    """What other threads may know of a loaded engine: plain values, safe to share.

    The chat template renders in any thread; nothing here reaches into llama.cpp.
    """

    text_info: TextModelInfo
    projector_info: ProjectorInfo | None
    vision_plan: VisionPlan | None
    settings: EngineSettings
    template: ChatTemplate
    template_note: str | None  # why the model's own template is not used, if it is not
    speed: Speed
    server: str | None = None  # a server's model: its address (its counts here are estimates)

    @property
    def has_vision(self) -> bool:
        return self.projector_info is not None
