"""llama.cpp + libmtmd: validate GGUF files, load a SmolVLM pair, run and cancel turns.

No Qt and no threads of its own: one thread owns an Engine and iterates its events.

The names below load on first use (loading llama.cpp takes a good part of a second), so
that reading a GGUF header or building a message does not wait for it.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "smolchat.engine.engine": ["ContextOverflowError", "Engine", "EngineError", "EngineSettings", "ModelInfo", "PrefillResult",
                               "PromptCount", "TextDelta", "TurnEvent", "TurnResult", "TurnStats"],
    "smolchat.engine.gguf_info": ["ModelFileError", "ProjectorInfo", "TextModelInfo", "check_pair",
                                  "inspect_projector", "inspect_text_model"],
    "smolchat.engine.images": ["ImageError", "PreparedImage", "prepare_image"],
    "smolchat.engine.native": ["SamplingParams"],
    "smolchat.engine.prompt": ["Message", "PromptError"],
    "smolchat.engine.chat_template": ["ChatTemplate", "TemplateError"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'smolchat.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
