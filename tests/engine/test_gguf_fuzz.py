"""Damaged GGUF files never take SmolChat down.

The tiny SmolVLM pair is cut short and has its header values changed: counts, lengths, value
types, the data alignment, every shape value (0, 1, a non-divisor, 2^31-1), every float (0, -1,
NaN, infinity), the tensor table and random bytes.
Reading and checking such a file raises ModelFileError or nothing, never another exception.
Whatever the checks let through is loaded by llama.cpp and libmtmd and answers one turn with an
image, in a child process: a file that aborts or hangs the process fails the test, named.
"""

from __future__ import annotations

import faulthandler
import json
import random
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gguf
import pytest

from smolchat.engine.gguf_info import ModelFileError, check_pair, inspect_projector, inspect_text_model

SEED = 2026
REPO = Path(__file__).resolve().parents[2]
VT = gguf.GGUFValueType
_FORMATS = {
    VT.UINT8: "B",
    VT.INT8: "b",
    VT.UINT16: "H",
    VT.INT16: "h",
    VT.UINT32: "I",
    VT.INT32: "i",
    VT.FLOAT32: "f",
    VT.BOOL: "B",
    VT.UINT64: "Q",
    VT.INT64: "q",
    VT.FLOAT64: "d",
}
# The shape values every integer key is set to: nothing, one, a non-divisor of the tiny widths
# (32, 48, 64, 128) and the largest 32-bit signed integer.
SHAPE_VALUES = (0, 1, 3, 2**31 - 1)


# -- where things are in a GGUF file ----------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One key/value pair of the header, with the byte offsets of its parts."""

    key: str
    key_length_at: int
    type_at: int
    value_type: int
    value_at: int  # scalar value, string length, or array element type
    array_count_at: int | None = None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    name_length_at: int
    n_dims_at: int
    n_dims: int
    dims_at: int
    type_at: int
    offset_at: int


@dataclass(frozen=True)
class Layout:
    entries: dict[str, Entry]
    tensors: list[TensorInfo]
    kv_end: int  # where the tensor infos start
    header_end: int  # where the tensor infos end
    data_start: int


def layout(data: bytes, path: Path) -> Layout:
    """The offsets of a well-formed file's header parts, as gguf's own reader finds them."""
    reader = gguf.GGUFReader(path)
    entries = {}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        key_length = len(field.name.encode())
        type_at = field.offset + 8 + key_length
        vtype = field.types[0]
        entries[field.name] = Entry(
            field.name, field.offset, type_at, vtype, type_at + 4, type_at + 8 if vtype == VT.ARRAY else None
        )
    tensors = []
    for t in reader.tensors:
        at = t.field.offset
        name_length = len(t.name.encode())
        n_dims_at = at + 8 + name_length
        n_dims = struct.unpack_from("<I", data, n_dims_at)[0]
        type_at = n_dims_at + 4 + 8 * n_dims
        tensors.append(TensorInfo(t.name, at, n_dims_at, n_dims, n_dims_at + 4, type_at, type_at + 4))
    last = tensors[-1]
    return Layout(entries, tensors, tensors[0].name_length_at, last.offset_at + 8, reader.data_offset)


def put(data: bytes, at: int, fmt: str, value: float) -> bytes:
    """``data`` with one little-endian value replaced; integers wrap to the field's width."""
    if fmt not in "fd":
        value = int(value) % (1 << (8 * struct.calcsize(fmt)))
        fmt = fmt.upper()
    return data[:at] + struct.pack("<" + fmt, value) + data[at + struct.calcsize(fmt) :]


def with_value(path: Path, key: str, value: int) -> bytes:
    """The bytes of ``path`` with the integer ``key`` set to ``value`` (in its own type)."""
    data = path.read_bytes()
    entry = layout(data, path).entries[key]
    return put(data, entry.value_at, _FORMATS[entry.value_type], value)


def with_key(data: bytes, where: Layout, key: str, value_type: int, payload: bytes) -> bytes:
    """``data`` with a key/value pair added (``payload``: the value's bytes); the tensor data moves
    to stay aligned to 32 bytes."""
    raw = key.encode()
    kv = struct.pack("<Q", len(raw)) + raw + struct.pack("<I", value_type) + payload
    header = data[: where.kv_end] + kv + data[where.kv_end : where.header_end]
    header = put(header, 16, "Q", struct.unpack_from("<Q", data, 16)[0] + 1)
    header += b"\0" * (-len(header) % 32)
    return header + data[where.data_start :]


def string_payload(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


# -- mutations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    name: str
    role: str  # "text" or "mmproj"
    data: bytes


def mutations(role: str, path: Path, rng: random.Random) -> list[Mutation]:
    data = path.read_bytes()
    where = layout(data, path)
    out: list[Mutation] = []

    def add(name: str, mutated: bytes) -> None:
        out.append(Mutation(f"{role}: {name}", role, mutated))

    # cut short: in the magic, the counts, anywhere in the header, at its end, in the data
    cuts = {0, 3, 5, 12, 20, where.header_end, where.data_start, len(data) // 2, len(data) - 1}
    cuts |= {rng.randrange(24, where.header_end) for _ in range(12)}
    for n in sorted(cuts):
        add(f"cut to {n} bytes", data[:n])

    # header counts
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    for at, what, real in ((8, "tensor count", n_tensors), (16, "key count", n_kv)):
        for value in (0, real - 1, real + 1, 2**32, 2**60, 2**64 - 1):
            add(f"{what} = {value}", put(data, at, "Q", value))
    add("version = 1", put(data, 4, "I", 1))
    add("version = 4", put(data, 4, "I", 4))

    for entry in where.entries.values():
        key = entry.key
        # key lengths
        for value in (0, len(key) - 1, len(key) + 1, 2**63, 2**64 - 1):
            add(f"length of key {key} = {value}", put(data, entry.key_length_at, "Q", value))
        # value types: one of the same size (parses, then means something else) and one at random
        same_size = [
            t
            for t, f in _FORMATS.items()
            if entry.value_type in _FORMATS
            and t != entry.value_type
            and struct.calcsize(f) == struct.calcsize(_FORMATS[entry.value_type])
        ]
        for vtype in {*rng.sample(same_size, min(2, len(same_size))), rng.choice(list(VT)), 13, 2**32 - 1}:
            add(f"type of {key} = {vtype}", put(data, entry.type_at, "I", vtype))
        if entry.value_type == VT.STRING:
            length = struct.unpack_from("<Q", data, entry.value_at)[0]
            for value in (0, length - 1, length + 1, 2**63, 2**64 - 1):
                add(f"length of {key} = {value}", put(data, entry.value_at, "Q", value))
        elif entry.value_type == VT.ARRAY:
            count = struct.unpack_from("<Q", data, entry.array_count_at)[0]
            for value in (0, 1, count - 1, count + 1, 2**60, 2**64 - 1):
                add(f"count of {key} = {value}", put(data, entry.array_count_at, "Q", value))
            for etype in (VT.ARRAY, rng.choice(list(VT)), 13):
                add(f"element type of {key} = {etype}", put(data, entry.value_at, "I", etype))
        elif entry.value_type in (VT.FLOAT32, VT.FLOAT64):
            for value in (0.0, -1.0, float("nan"), float("inf")):
                add(f"{key} = {value}", put(data, entry.value_at, _FORMATS[entry.value_type], value))
        elif entry.value_type != VT.BOOL:
            for value in SHAPE_VALUES + (2**32 - 1,):
                add(f"{key} = {value}", put(data, entry.value_at, _FORMATS[entry.value_type], value))
        else:
            add(f"{key} flipped", put(data, entry.value_at, "B", 1 - data[entry.value_at]))
            add(f"{key} = 2", put(data, entry.value_at, "B", 2))

    # tensor infos: every value of a few tensors, one value of each other one
    full = {0, len(where.tensors) // 2, len(where.tensors) - 1}
    for i, t in enumerate(where.tensors):
        options = [("name length", t.name_length_at, "Q", v) for v in (0, len(t.name) - 1, len(t.name) + 1, 2**63)]
        options += [("dimension count", t.n_dims_at, "I", v) for v in (0, 1, 2, 3, 5, 2**32 - 1)]
        options += [
            (f"dimension {d}", t.dims_at + 8 * d, "Q", v)
            for d in range(t.n_dims)
            for v in (*SHAPE_VALUES, 2**63, 2**64 - 1)
        ]
        options += [("type", t.type_at, "I", v) for v in (*(int(q) for q in gguf.GGMLQuantizationType), 4, 43, 2**31)]
        options += [("data offset", t.offset_at, "Q", v) for v in (0, 1, 32, 2**63)]
        for what, at, fmt, value in options if i in full else [rng.choice(options)]:
            add(f"{what} of tensor {t.name} = {value}", put(data, at, fmt, value))

    # the data alignment, as llama.cpp reads it: a 32-bit power of two
    alignment = "general.alignment"
    for value in (0, 1, 3, 16, 31, 32, 64, 2**31, 2**32 - 1):
        add(f"{alignment} = {value}", with_key(data, where, alignment, VT.UINT32, struct.pack("<I", value)))
    add(f"{alignment} as a float", with_key(data, where, alignment, VT.FLOAT32, struct.pack("<f", 32.0)))
    add(f"{alignment} as a 64-bit integer", with_key(data, where, alignment, VT.UINT64, struct.pack("<Q", 32)))
    add(f"{alignment} as a string", with_key(data, where, alignment, VT.STRING, string_payload("32")))

    # random bytes anywhere in the header
    for _ in range(60):
        mutated = bytearray(data)
        changes = []
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(4, where.header_end)
            mutated[at] = rng.randrange(256)
            changes.append(f"{at}={mutated[at]}")
        add(f"bytes {' '.join(changes)}", bytes(mutated))
    return out


# -- loading in a child process ----------------------------------------------------------------


def _load_each(batch_file: str, image: str, log_file: str) -> None:
    """In a child process: load each pair and run one turn with an image, noting in ``log_file``
    which pair it tries before trying it (llama.cpp may write to stdout too)."""
    faulthandler.enable()  # a crash reports where in Python it happened
    import llama_cpp

    from smolchat.engine import EngineSettings, Message, SamplingParams
    from smolchat.engine.engine import Engine
    from smolchat.errors import SmolChatError
    from tests.helpers import answer

    # a runaway allocation fails the file instead of exhausting the machine (not with a GPU build:
    # its driver reserves far more address space than it uses)
    if sys.platform != "win32" and not llama_cpp.llama_supports_gpu_offload():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    settings = EngineSettings(
        n_ctx=256,
        n_threads=1,
        n_threads_batch=1,
        n_threads_vision=1,
        vision_backend="llama.cpp",
        vision_precision="F16",
    )
    one_token = SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True)
    with open(log_file, "a", encoding="utf-8") as log:
        for index, text, mmproj in json.loads(Path(batch_file).read_text()):
            print(f"TRY {index}", file=log, flush=True)
            try:
                with Engine(text, mmproj, settings) as engine:
                    answer(engine, [Message.user("What is it?", images=[image])], one_token)
                outcome = "answered"
            except SmolChatError as e:
                outcome = f"refused: {e}"
            except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test
                outcome = f"raised {type(e).__name__}: {e}"
            print(f"DONE {index} {json.dumps(outcome)}", file=log, flush=True)


def load_in_child(
    pairs: list[tuple[Path, Path]], image: Path, work: Path, timeout_s: float = 240, max_crashes: int = 5
) -> list[str]:
    """Load every (text, mmproj) pair with llama.cpp in child processes; per pair, what happened:
    'answered', 'refused: ...', 'raised ...', 'crashed (...)', 'hung' or 'not tried' (after
    ``max_crashes`` crashes). A crash ends one child; the next one goes on after that pair."""
    outcomes: dict[int, str] = {}
    pending = list(range(len(pairs)))
    while pending and sum(o.startswith(("crashed", "hung")) for o in outcomes.values()) < max_crashes:
        batch, log = work / "batch.json", work / "batch.log"
        batch.write_text(json.dumps([(i, str(pairs[i][0]), str(pairs[i][1])) for i in pending]))
        log.write_text("")
        code = (
            f"from tests.engine.test_gguf_fuzz import _load_each; "
            f"_load_each({str(batch)!r}, {str(image)!r}, {str(log)!r})"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            _, stderr = child.communicate(timeout=timeout_s)
            ended = None if child.returncode == 0 else _exit_reason(child.returncode, stderr)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            ended = "hung"
        tried = None
        for line in log.read_text(encoding="utf-8").splitlines():
            word, _, rest = line.partition(" ")
            if word == "TRY":
                tried = int(rest)
            elif word == "DONE":
                index, _, outcome = rest.partition(" ")
                outcomes[int(index)] = json.loads(outcome)
                tried = None
        if tried is not None:
            outcomes[tried] = ended or "crashed (no reason given)"
        elif ended is not None:
            raise AssertionError(f"the loading child process failed between files: {ended}")
        pending = [i for i in pending if i not in outcomes]
    return [outcomes.get(i, "not tried") for i in range(len(pairs))]


def _exit_reason(returncode: int, stderr: str) -> str:
    """The signal, and where it struck: ggml's failed assertion, or the innermost Python frame."""
    reason = signal.Signals(-returncode).name if returncode < 0 else f"exit status {returncode}"
    lines = [line.strip() for line in stderr.splitlines()]
    where = next((line for line in lines if "GGML_ASSERT" in line or "GGML_ABORT" in line), None)
    if where is None and "Fatal Python error" in stderr:
        frames = lines[[i for i, line in enumerate(lines) if line.startswith("Fatal Python error")][-1] :]
        where = next((line for line in frames if line.startswith("File ")), None)
    return f"crashed ({reason}{f' at {where}' if where else ''})"


# -- the tests ---------------------------------------------------------------------------------


def _checked(text: Path, mmproj: Path, mutated: Path) -> str:
    """'refused' or 'accepted' by SmolChat's checks, or what went wrong."""
    try:
        check_pair(inspect_text_model(text), inspect_projector(mmproj))
    except ModelFileError as e:
        return "refused" if mutated.name in str(e) else f"refused without naming the file: {e}"
    except Exception as e:  # noqa: BLE001 - anything else is the failure these tests look for
        return f"raised {type(e).__name__}: {e}"
    return "accepted"


@dataclass
class FuzzRun:
    reading: dict[str, str]  # mutation -> what SmolChat's checks said
    loading: dict[str, str]  # mutation the checks let through -> what loading it and one turn did


@pytest.fixture(scope="module")
def fuzz(tiny_pair, images, tmp_path_factory) -> FuzzRun:
    rng = random.Random(SEED)
    text, mmproj = tiny_pair
    work = tmp_path_factory.mktemp("damaged")
    reading: dict[str, str] = {}
    accepted: dict[str, tuple[Path, Path]] = {}
    for i, m in enumerate(mutations("text", text, rng) + mutations("mmproj", mmproj, rng)):
        path = work / f"{i}-{m.role}.gguf"
        path.write_bytes(m.data)
        pair = (path, mmproj) if m.role == "text" else (text, path)
        reading[m.name] = _checked(*pair, path)
        if reading[m.name] == "accepted":
            accepted[m.name] = pair
        else:
            path.unlink()
    outcomes = load_in_child(list(accepted.values()), images["small"], work)
    return FuzzRun(reading, dict(zip(accepted, outcomes)))


def test_reading_damaged_files_raises_only_model_file_errors(fuzz):
    failures = [
        f"{name}: {verdict}" for name, verdict in fuzz.reading.items() if verdict not in ("refused", "accepted")
    ]
    assert not failures, "\n".join(failures)
    assert sum(v == "refused" for v in fuzz.reading.values()) > len(fuzz.reading) / 2  # the mutations do damage


def test_files_the_checks_let_through_neither_crash_nor_hang(fuzz):
    failures = [
        f"{name}: {outcome}" for name, outcome in fuzz.loading.items() if outcome.startswith(("crashed", "hung"))
    ]
    assert not failures, "\n".join(failures)
    assert any(outcome == "answered" for outcome in fuzz.loading.values())  # the loading itself works


def test_files_the_checks_let_through_fail_only_with_our_errors(fuzz):
    failures = [f"{name}: {outcome}" for name, outcome in fuzz.loading.items() if outcome.startswith("raised")]
    assert not failures, "\n".join(failures)
