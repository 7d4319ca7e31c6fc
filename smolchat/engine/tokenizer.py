"""A model's tokenizer on its own: the vocabulary of a text GGUF, without its weights.

Counting the tokens of a message while it is typed must not wait for the engine, which may
be busy reading an image or writing an answer, and must not touch the engine from another
thread. A ``Tokenizer`` loads only the vocabulary (llama.cpp's ``vocab_only``: milliseconds,
a few MB) and belongs to whoever made it.
"""

from __future__ import annotations

import os
from pathlib import Path

from smolchat.engine import native
from smolchat.engine.backends import llama_cpp
from smolchat.engine.gguf_info import ModelFileError, inspect_text_model


class Tokenizer:
    """Not thread-safe: one thread makes, uses and closes it."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        path = Path(model_path)
        inspect_text_model(path)  # llama.cpp aborts on some damaged files: check them first
        try:
            self._model: native.TextModel | None = native.TextModel(str(path), vocab_only=True)
        except native.LoadError as e:
            raise ModelFileError(
                path, f"has a vocabulary llama.cpp cannot read ({e}).", "Download the model again."
            ) from e

    def count(self, text: str, add_bos: bool = False) -> int:
        """Tokens of ``text``, special tokens parsed (as the engine tokenizes prompts)."""
        if self._model is None:
            raise RuntimeError("the tokenizer is closed")
        return len(self._model.tokenize(text, add_bos=add_bos))

    @property
    def bos_text(self) -> str:
        assert self._model is not None
        return self._model.token_text(llama_cpp.llama_vocab_bos(self._model.vocab))

    @property
    def eos_text(self) -> str:
        assert self._model is not None
        return self._model.token_text(llama_cpp.llama_vocab_eos(self._model.vocab))

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Tokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
