"""The models on this computer: pairs downloaded into the Hugging Face cache, and pairs
imported from disk.

A downloaded model is a text GGUF of a repo together with that repo's vision projector, both
complete in the cache; it is named like llama.cpp names it, ``owner/name:Q8_0``. An imported
model is a pair of files elsewhere on disk that passed the engine's checks; SmolChat records
where they are and never moves or deletes them. Nothing here needs the network.

Every file is checked as the engine would check it before loading. A file that fails (damaged,
unreadable, gone, or a projector made for another model) is listed as unusable with the reason,
never raised: one bad file in a shared cache must not stop the app or hide the other models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from smolchat import paths
from smolchat.engine.gguf_info import (
    ModelFileError,
    ProjectorInfo,
    TextModelInfo,
    check_pair,
    inspect_projector,
    inspect_text_model,
)
from smolchat.engine.vision.projector_files import copies_of, remove_copies
from smolchat.errors import SmolChatError
from smolchat.files import write_json
from smolchat.models import hf_cache
from smolchat.models.formats import (
    default_projector_file,
    default_text_file,
    format_name,
    is_projector,
)

Info = TypeVar("Info", TextModelInfo, ProjectorInfo)


class NotInstalledError(SmolChatError):
    pass


@dataclass(frozen=True)
class InstalledModel:
    name: str  # "owner/name:Q8_0" for a download, the chosen name for an import
    text: Path
    mmproj: Path
    repo: str | None  # None: imported from disk
    size_bytes: int

    @property
    def imported(self) -> bool:
        return self.repo is None

    @property
    def text_format(self) -> str:
        return format_name(self.text.name)

    @property
    def mmproj_format(self) -> str:
        return format_name(self.mmproj.name)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "repo": self.repo,
            "text": str(self.text),
            "mmproj": str(self.mmproj),
            "text_format": self.text_format,
            "mmproj_format": self.mmproj_format,
            "size_bytes": self.size_bytes,
            "imported": self.imported,
        }


@dataclass(frozen=True)
class UnusableFile:
    """A model file on this computer that SmolChat cannot use: damaged, unreadable or gone."""

    model: str  # what it belongs to: "owner/name:Q8_0", "owner/name" for a repo's projector, an imported name
    path: Path
    reason: str  # the file's name, what is wrong with it and what to do


@dataclass(frozen=True)
class Inventory:
    installed: list[InstalledModel]
    unusable: list[UnusableFile]


def model_name(repo: str, text_file: str) -> str:
    """A downloaded model's name, as llama.cpp names it: the repo and its text file's format,
    ``owner/name:Q8_0``."""
    return f"{repo}:{format_name(text_file)}"


class Library:
    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.cache_dir = Path(cache_dir or paths.models_dir())
        # What the engine's checks read from each good file, while it stays unchanged: a later look
        # at the library (the picker's, after the one at start) parses no GGUF header again.
        self._checked: dict[tuple, TextModelInfo | ProjectorInfo] = {}

    @property
    def _imports_file(self) -> Path:
        return paths.data_dir() / "imported-models.json"

    def installed(self) -> list[InstalledModel]:
        return self.inventory().installed

    def inventory(self) -> Inventory:
        """The usable models, and every file found that cannot be used and why."""
        found = [*self._downloaded(), *self._imported()]
        return Inventory(
            [f for f in found if isinstance(f, InstalledModel)], [f for f in found if isinstance(f, UnusableFile)]
        )

    def _downloaded(self) -> list[InstalledModel | UnusableFile]:
        found: list[InstalledModel | UnusableFile] = []
        for folder in sorted(self.cache_dir.glob("models--*")):
            repo = hf_cache.repo_of_folder(folder)
            if repo is None:
                continue
            try:
                files = hf_cache.cached_files(self.cache_dir, repo)
            except OSError as e:
                found.append(UnusableFile(repo, folder, str(_unreadable(folder, e))))
                continue
            projectors = {}
            for f in files:
                if is_projector(f.filename):
                    try:
                        self._check(f.path, inspect_projector)
                        projectors[f.filename] = f
                    except ModelFileError as e:
                        found.append(UnusableFile(repo, f.path, str(e)))
            chosen = default_projector_file({name: f.size for name, f in projectors.items()})
            if chosen is None:
                continue  # no usable SmolVLM projector: not a model SmolChat can run
            found += [
                self._pair(model_name(repo, f.filename), f.path, projectors[chosen].path, repo)
                for f in files
                if not is_projector(f.filename)
            ]
        return found

    def _imported(self) -> list[InstalledModel | UnusableFile]:
        return [self._pair(e["name"], Path(e["text"]), Path(e["mmproj"]), None) for e in self._read_imports()]

    def _pair(self, name: str, text: Path, mmproj: Path, repo: str | None) -> InstalledModel | UnusableFile:
        """The model, once the engine's checks pass for both files and for the two together."""
        try:
            projector = self._check(mmproj, inspect_projector)
            text_info = self._check(text, inspect_text_model)
            check_pair(text_info, projector)
        except ModelFileError as e:
            return UnusableFile(name, e.path, str(e))
        return InstalledModel(name, text, mmproj, repo, text_info.size_bytes + projector.size_bytes)

    def _check(self, path: Path, inspect: Callable[[Path], Info]) -> Info:
        """``inspect(path)``; what it found in a good file is remembered while the file stays unchanged."""
        try:
            stat = path.stat()
            key = (path, inspect, stat.st_size, stat.st_mtime_ns)
            if key not in self._checked:
                self._checked[key] = inspect(path)
            return cast(Info, self._checked[key])  # the key holds ``inspect``: the value is what it returns
        except FileNotFoundError:
            return inspect(path)  # says which file is gone, in its own words
        except OSError as e:
            raise _unreadable(path, e) from e

    def find(self, name: str, quant: str | None = None) -> InstalledModel:
        """An installed model by repo (and format) or by imported name."""
        models = self.installed()
        if ":" in name and quant is None:
            name, quant = name.rsplit(":", 1)
        matches = [m for m in models if (m.repo or m.name).lower() == name.lower()]
        if quant:
            wanted = quant.upper().replace("-", "_")
            matches = [m for m in matches if m.text_format.upper() == wanted or m.text.name == quant]
        if not matches:
            suffix = f" --quant {quant}" if quant else ""
            raise NotInstalledError(
                f"{name}{':' + quant if quant else ''} is not installed. Download it with "
                f"`smolchat models download {name}{suffix}`, or see `smolchat models installed`."
            )
        if len(matches) == 1 or quant:
            return matches[0]
        by_file = {m.text.name: m for m in matches}  # several formats: the same default as for downloads
        chosen = default_text_file({m.text.name: m.text.stat().st_size for m in matches})
        assert chosen is not None  # there is a default among several GGUFs of one repo
        return by_file[chosen]

    def remove(self, name: str, quant: str | None = None) -> list[str]:
        """Delete a downloaded model's files (or forget an imported one); the names removed.
        The projector copies SmolChat made (converted, layout-only) go too once no installed
        model uses their projector, and so do copies whose projector is gone."""
        imported = next((e for e in self._read_imports() if e["name"] == name), None)
        if imported is not None:
            self._write_imports([e for e in self._read_imports() if e["name"] != name])
            mmproj = Path(imported["mmproj"])
            in_use = {m.mmproj.resolve() for m in self.installed()}
            remove_copies(copies_of(mmproj) if mmproj.resolve() not in in_use else ())
            return [name]
        files = hf_cache.cached_files(self.cache_dir, name)
        if not files:
            raise NotInstalledError(f"Nothing of {name} is installed; see `smolchat models installed`.")
        texts = [f for f in files if not is_projector(f.filename)]
        if quant:
            doomed = [f for f in texts if format_name(f.filename).upper() == quant.upper() or f.filename == quant]
            if not doomed:
                have = ", ".join(format_name(f.filename) for f in texts) or "only a projector"
                raise NotInstalledError(f"{name} has no {quant} installed; it has {have}.")
            if len(doomed) == len(texts):  # the last text model goes: its projector is of no use alone
                doomed += [f for f in files if is_projector(f.filename)]
        else:
            doomed = files
        # named before the files go: a copy's name is made from its projector's path, size and time
        copies = [c for f in doomed if is_projector(f.filename) for c in copies_of(f.path)]
        for f in doomed:
            hf_cache.remove_cached(self.cache_dir, f)
        if not quant:
            for partial in (hf_cache.repo_folder(self.cache_dir, name) / "blobs").glob("*.incomplete"):
                partial.unlink(missing_ok=True)
        hf_cache.remove_repo_if_empty(self.cache_dir, name)
        remove_copies(copies)
        return [f.filename for f in doomed]

    def import_pair(
        self, text: str | os.PathLike[str], mmproj: str | os.PathLike[str], name: str | None = None
    ) -> InstalledModel:
        """Check a text GGUF and its projector with the engine's validation, then remember them."""
        text, mmproj = Path(text).expanduser().resolve(), Path(mmproj).expanduser().resolve()
        check_pair(inspect_text_model(text), inspect_projector(mmproj))
        name = (name or text.stem).strip()
        if not name or ":" in name:
            raise SmolChatError("A model name cannot be empty or contain ':'; choose another with --name.")
        entries = self._read_imports()
        for entry in entries:
            if entry["name"] == name and (entry["text"], entry["mmproj"]) != (str(text), str(mmproj)):
                raise SmolChatError(f"A model named '{name}' is already imported; choose another name with --name.")
        entries = [e for e in entries if e["name"] != name] + [{"name": name, "text": str(text), "mmproj": str(mmproj)}]
        self._write_imports(entries)
        return InstalledModel(name, text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)

    def _read_imports(self) -> list[dict]:
        try:
            entries = json.loads(self._imports_file.read_text())
            return [e for e in entries if isinstance(e, dict) and {"name", "text", "mmproj"} <= e.keys()]
        except (OSError, ValueError):
            return []

    def _write_imports(self, entries: list[dict]) -> None:
        write_json(self._imports_file, entries)


def _unreadable(path: Path, error: OSError) -> ModelFileError:
    return ModelFileError(path, f"cannot be read ({error.strerror or error}).")
