"""llama.cpp + libmtmd: validate GGUF files, load a SmolVLM pair, run and cancel turns.

No Qt and no threads of its own: one thread owns an Engine and iterates its events.

The names here are the engine's plain values (settings, results, messages) and import nothing
but the standard library: the store, the settings and the budgets use them without loading
llama.cpp, numpy or jinja2. The rest is imported from its module: GGUF checks from
``gguf_info``, pictures from ``images``, templates from ``chat_template`` and the Engine itself
from ``engine``.
"""

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

__all__ = [
    "ContextOverflowError",
    "EngineError",
    "EngineSettings",
    "Message",
    "ModelInfo",
    "PrefillResult",
    "PromptCount",
    "PromptError",
    "SamplingParams",
    "TextDelta",
    "TurnEvent",
    "TurnResult",
    "TurnStats",
    "VisionEncoderError",
]
