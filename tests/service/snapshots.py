"""Finding what calls into llama.cpp inside a value: an Engine, a native handle, a ctypes object."""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import threading
import types
from pathlib import PurePath

from smolchat.engine import native
from smolchat.engine.engine import Engine

NATIVE_TYPES = (Engine, native.TextModel, native.TokenBatch, native.SamplerChain, native.AbortWatch)
_CTYPES = (ctypes._SimpleCData, ctypes._Pointer, ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._CFuncPtr)
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), PurePath, enum.Enum, range)
_NOT_DATA = (
    types.ModuleType,
    type,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    types.GeneratorType,
    type(threading.Lock()),
    type(threading.RLock()),
)


def native_objects_in(
    value: object, name: str = "value", kinds: tuple[type, ...] = NATIVE_TYPES + _CTYPES, llama_cpp: bool = True
) -> list[str]:
    """Where in ``value`` (through attributes, dataclass fields, containers, bound methods and
    closures) an object of ``kinds`` (by default anything of llama.cpp's) is reachable; [] when
    none is."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[tuple[object, str]] = [(value, name)]
    while todo:
        obj, where = todo.pop()
        if isinstance(obj, _PLAIN) or id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        if isinstance(obj, kinds) or (llama_cpp and kind.__module__.split(".")[0] == "llama_cpp"):
            found.append(f"{where}: {kind.__module__}.{kind.__qualname__}")
            continue
        if isinstance(obj, _NOT_DATA):
            continue
        if isinstance(obj, types.MethodType):
            todo.append((obj.__self__, f"{where}.__self__"))
        elif isinstance(obj, types.FunctionType):  # what a closure captured; not its module's globals
            for cell in obj.__closure__ or ():
                try:
                    todo.append((cell.cell_contents, f"{where}.<closure>"))
                except ValueError:  # a cell not filled yet
                    pass
        elif isinstance(obj, dict):
            todo += [(v, f"{where}[{k!r}]") for k, v in obj.items()] + [(k, f"{where}.<key>") for k in obj]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo += [(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        else:
            if dataclasses.is_dataclass(obj):
                todo += [(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)]
            for slot in getattr(kind, "__slots__", ()):
                if isinstance(slot, str) and hasattr(obj, slot):
                    todo.append((getattr(obj, slot), f"{where}.{slot}"))
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                todo += [(v, f"{where}.{k}") for k, v in attributes.items()]
    return found
