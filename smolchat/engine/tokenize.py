"""A rendered prompt as llama.cpp evaluates it: text tokens and image chunks.

The prompt is seen two ways. As *units*, to compare with what the KV cache holds: one per
text token, one per image chunk (an _ImageUnit names the picture by its pixel hash). And as
*chunks*, to evaluate: runs of text tokens, and libmtmd image chunks (one per 512 px tile
for SmolVLM) that the vision encoder turns into embeddings.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import llama_cpp.mtmd_cpp as mtmd

from smolchat.engine.prompt import FRAME_CLOSE, FRAME_OPEN, Segment
from smolchat.errors import SmolChatError


class TokenizeError(SmolChatError):
    """libmtmd could not lay the prompt out."""


@dataclass(frozen=True)
class ImageUnit:
    """One image chunk as it sits in the KV cache."""

    content_id: str
    index: int  # which chunk of this image
    n_pos: int


Unit = int | ImageUnit  # a text token, or an image chunk


@dataclass
class Chunk:
    first_unit: int
    n_units: int
    first_pos: int
    n_pos: int
    tokens: list[int] | None = None  # a text chunk's tokens
    image_ptr: object = None  # an image chunk: its mtmd_input_chunk (valid inside `mtmd_layout`)
    n_image_tokens: int = 0


@dataclass
class TokenizedPrompt:
    units: list[Unit] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    n_pos: int = 0
    image_tokens: int = 0
    images: dict = field(default_factory=dict)  # content id -> PreparedImage, for other encoders
    pictures: int = 0  # images in the prompt (photos, pages), each counted where it appears
    frames: int = 0  # video frames in it

    @staticmethod
    def unit_pos(unit: Unit) -> int:
        return unit.n_pos if isinstance(unit, ImageUnit) else 1

    def positions(self, n_units: int) -> int:
        """Positions taken by the first ``n_units`` units."""
        return sum(self.unit_pos(u) for u in self.units[:n_units])

    def image_ids_from(self, n_units: int) -> frozenset[str]:
        return frozenset(u.content_id for u in self.units[n_units:] if isinstance(u, ImageUnit))

    def last_image_end(self) -> int:
        """Units up to and including the last image chunk (0 without images)."""
        return max((i + 1 for i, u in enumerate(self.units) if isinstance(u, ImageUnit)), default=0)


def text_prompt(tokens: Sequence[int]) -> TokenizedPrompt:
    tokens = list(tokens)
    prompt = TokenizedPrompt(units=list(tokens), n_pos=len(tokens))
    prompt.chunks.append(Chunk(0, len(tokens), 0, len(tokens), tokens=tokens))
    return prompt


@contextmanager
def mtmd_layout(
    mtmd_ctx: object, segments: Sequence[Segment], real_ids: frozenset[str], frame_ctx: object = None
) -> Iterator[TokenizedPrompt]:
    """Tokenize ``segments`` with libmtmd.

    Images whose content id is in ``real_ids`` get their pixels (so their chunks can be
    encoded); the others are placeholders of the same size, which libmtmd lays out
    identically without any pixel work. A one-tile image (a video frame) is laid out by
    ``frame_ctx`` (libmtmd limited to one tile's tokens, so it neither enlarges nor cuts the
    frame): its one chunk, between FRAME_OPEN and FRAME_CLOSE. The chunks are freed when the
    block ends.
    """
    lists: list[object] = []
    pieces: list[object] = []  # chunks in prompt order
    run: list[Segment] = []
    try:
        for segment in segments:
            if isinstance(segment, str) or not segment.one_tile:
                run.append(segment)
                continue
            if frame_ctx is None:
                raise TokenizeError(f"{segment.source}: this model cannot read video frames.")
            run.append(FRAME_OPEN)
            pieces += _tokenized_parts(mtmd_ctx, run, real_ids, lists, add_special=not lists)
            frame_chunks = _tokenized_parts(frame_ctx, [segment], real_ids, lists, add_special=False)
            images = [c for c in frame_chunks if mtmd.mtmd_input_chunk_get_type(c) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE]
            if not images:
                raise TokenizeError(f"{segment.source}: libmtmd could not lay this frame out.")
            pieces.append(images[-1])  # the frame whole (libmtmd puts the overview last)
            run = [FRAME_CLOSE]
        if run or not lists:
            pieces += _tokenized_parts(mtmd_ctx, run, real_ids, lists, add_special=not lists)
        prompt = _read_chunks(pieces)
        prompt.images = {s.content_id: s for s in segments if not isinstance(s, str)}
        prompt.frames = sum(1 for s in segments if not isinstance(s, str) and s.one_tile)
        prompt.pictures = sum(1 for s in segments if not isinstance(s, str)) - prompt.frames
        yield prompt
    finally:
        for chunks in lists:
            mtmd.mtmd_input_chunks_free(chunks)


def _tokenized_parts(
    ctx: object, segments: Sequence[Segment], real_ids: frozenset[str], lists: list[object], *, add_special: bool
) -> list[object]:
    """The chunks libmtmd makes of ``segments``; their list is added to ``lists`` to be freed."""
    keep_alive, bitmaps = [], []
    parts = (mtmd.mtmd_input_part * len(segments))()
    try:
        for i, segment in enumerate(segments):
            if isinstance(segment, str):
                data = segment.encode("utf-8")
                text = mtmd.mtmd_input_text(data, len(data), True, True)
                keep_alive += [data, text]
                parts[i].text = ctypes.pointer(text)
                parts[i].bitmap = None
            else:
                pixels = None
                if segment.content_id in real_ids:
                    pixels = (ctypes.c_ubyte * len(segment.rgb)).from_buffer_copy(segment.rgb)
                bitmap = mtmd.mtmd_bitmap_init(segment.width, segment.height, pixels)
                if not bitmap:
                    raise TokenizeError(f"{segment.source}: libmtmd could not take this image.")
                bitmaps.append(bitmap)
                mtmd.mtmd_bitmap_set_id(bitmap, segment.content_id.encode())
                parts[i].text = None  # type: ignore[assignment]  # a NULL pointer; the declared field type has no None
                parts[i].bitmap = bitmap
        part_ptrs = (ctypes.POINTER(mtmd.mtmd_input_part) * len(segments))(
            *[ctypes.pointer(parts[i]) for i in range(len(segments))]
        )
        chunks = mtmd.mtmd_input_chunks_init()
        lists.append(chunks)
        rc = mtmd.mtmd_tokenize_from_parts(ctx, chunks, part_ptrs, len(segments), add_special)
    finally:
        for bitmap in bitmaps:  # the chunks hold their own copy of the preprocessed pixels
            mtmd.mtmd_bitmap_free(bitmap)
    if rc != 0:
        raise TokenizeError(f"libmtmd could not tokenize this conversation (code {rc}).")
    return [mtmd.mtmd_input_chunks_get(chunks, i) for i in range(mtmd.mtmd_input_chunks_size(chunks))]


def _read_chunks(chunks: Sequence[object]) -> TokenizedPrompt:
    prompt = TokenizedPrompt()
    seen: dict[str, int] = {}
    n_tokens = ctypes.c_size_t()
    for chunk in chunks:
        kind = mtmd.mtmd_input_chunk_get_type(chunk)
        first_unit, first_pos = len(prompt.units), prompt.n_pos
        if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n_tokens))
            tokens = ptr[: n_tokens.value] if n_tokens.value else []
            prompt.units.extend(tokens)
            prompt.n_pos += len(tokens)
            prompt.chunks.append(Chunk(first_unit, len(tokens), first_pos, len(tokens), tokens=tokens))
        elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            content_id = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
            index = seen.get(content_id, 0)
            seen[content_id] = index + 1
            n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
            n_image_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            prompt.units.append(ImageUnit(content_id, index, n_pos))
            prompt.n_pos += n_pos
            prompt.image_tokens += n_image_tokens
            prompt.chunks.append(Chunk(first_unit, 1, first_pos, n_pos, image_ptr=chunk, n_image_tokens=n_image_tokens))
        else:
            raise TokenizeError("This conversation holds media SmolChat cannot play (audio).")
    return prompt


def common_prefix(a: Sequence[Unit], b: Sequence[Unit]) -> int:
    """How many leading units two sequences share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
