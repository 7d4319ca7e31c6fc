"""llama.cpp + libmtmd: validate GGUF files, load a SmolVLM pair, run and cancel turns.

No Qt and no threads of its own: one thread owns an Engine and iterates its events.
"""

from smolchat.engine.engine import (
    ContextOverflowError,
    Engine,
    EngineError,
    EngineSettings,
    PrefillResult,
    PromptCount,
    TextDelta,
    TurnEvent,
    TurnResult,
    TurnStats,
)
from smolchat.engine.gguf_info import (
    ModelFileError,
    ProjectorInfo,
    TextModelInfo,
    check_pair,
    inspect_projector,
    inspect_text_model,
)
from smolchat.engine.images import ImageError, PreparedImage, prepare_image
from smolchat.engine.native import SamplingParams
from smolchat.engine.prompt import Message, PromptError

__all__ = [
    "ContextOverflowError", "Engine", "EngineError", "EngineSettings", "ImageError", "Message",
    "ModelFileError", "PrefillResult", "PreparedImage", "PromptCount", "ProjectorInfo", "PromptError",
    "SamplingParams", "TextDelta", "TextModelInfo", "TurnEvent", "TurnResult", "TurnStats",
    "check_pair", "inspect_projector", "inspect_text_model", "prepare_image",
]
