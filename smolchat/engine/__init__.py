"""llama.cpp + libmtmd: validate GGUF files, load a SmolVLM pair, run and cancel turns.

No Qt and no threads of its own: one thread owns an Engine and iterates its events.

The names here are the engine's plain values, and none of them loads llama.cpp (which takes
a good part of a second): reading a GGUF header, building a message or settings does not
wait for it. The Engine itself is ``smolchat.engine.engine.Engine``.
"""

from smolchat.engine.chat_template import ChatTemplate, TemplateError
from smolchat.engine.gguf_info import (
    ModelFileError,
    ProjectorInfo,
    TextModelInfo,
    check_pair,
    inspect_projector,
    inspect_text_model,
)
from smolchat.engine.images import ImageError, PreparedImage, prepare_image
from smolchat.engine.prompt import Message, PromptError
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
from smolchat.engine.vision.plan import VisionPlan

__all__ = [
    "ChatTemplate",
    "ContextOverflowError",
    "EngineError",
    "EngineSettings",
    "ImageError",
    "Message",
    "ModelFileError",
    "ModelInfo",
    "PrefillResult",
    "PreparedImage",
    "ProjectorInfo",
    "PromptCount",
    "PromptError",
    "SamplingParams",
    "TemplateError",
    "TextDelta",
    "TextModelInfo",
    "TurnEvent",
    "TurnResult",
    "TurnStats",
    "VisionEncoderError",
    "VisionPlan",
    "check_pair",
    "inspect_projector",
    "inspect_text_model",
    "prepare_image",
]
