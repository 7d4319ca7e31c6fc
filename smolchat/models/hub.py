"""Talking to the Hugging Face Hub: listing a repo's GGUF files, and errors a person can act on.

The Hub's address, token and cache folder follow huggingface_hub (``HF_ENDPOINT``,
``HF_TOKEN`` or ``hf auth login``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``). Every listing is
remembered, so that a repo can still be shown when the Hub cannot be reached.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx2
from huggingface_hub import constants, errors, get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from smolchat import paths
from smolchat.errors import SmolChatError
from smolchat.files import write_json
from smolchat.models import hf_cache
from smolchat.models.catalog import check_repo_id
from smolchat.models.formats import (
    Format,
    default_projector_file,
    default_text_file,
    format_name,
    is_projector,
    parse_format,
)

LISTING_TIMEOUT_S = 15.0
MAX_LISTING_PAGES = 100  # the Hub pages a tree listing by 1000 entries; a GGUF repo needs one or two


class HubError(SmolChatError):
    """The Hub could not give what was asked; the message says why and what to do."""


class HubUnreachableError(HubError):
    pass


class RepoNotFoundError(HubError):
    pass


class GatedRepoError(HubError):
    pass


class FileGoneError(HubError):
    pass


class HubAnswerError(HubError):
    """The Hub (or the mirror HF_ENDPOINT names) answered with something SmolChat cannot use safely."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the LFS hash; every GGUF on the Hub is stored through LFS

    @classmethod
    def checked(cls, path: object, size: object, sha256: object) -> RemoteFile:
        """A file as a server described it; ValueError saying what is wrong with the description."""
        if problem := hf_cache.file_name_problem(path):
            raise ValueError(f"a file named {path!r}, which {problem}")
        assert isinstance(path, str)  # a name with no problem is a string
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{path} with a size of {size!r}")
        if not (sha256 is None or hf_cache.is_sha256(sha256)):
            raise ValueError(f"{path} with a hash of {sha256!r}, which is not a sha256")
        return cls(path, size, sha256)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def format(self) -> Format | None:
        return parse_format(self.path)

    @property
    def format_name(self) -> str:
        return format_name(self.path)

    @property
    def is_projector(self) -> bool:
        return is_projector(self.path)


@dataclass(frozen=True)
class RepoListing:
    repo: str
    files: tuple[RemoteFile, ...]  # the repo's GGUF files
    listed_at: float = field(default_factory=time.time)
    offline: bool = False  # True: remembered from an earlier listing, the Hub was not reached

    @property
    def text_files(self) -> list[RemoteFile]:
        return sorted((f for f in self.files if not f.is_projector), key=_by_size)

    @property
    def projector_files(self) -> list[RemoteFile]:
        return sorted((f for f in self.files if f.is_projector), key=_by_size)

    def _sizes(self) -> dict[str, int]:
        return {f.path: f.size for f in self.files}

    @property
    def default_text(self) -> RemoteFile | None:
        name = default_text_file(self._sizes())
        return self.file(name) if name else None

    @property
    def default_projector(self) -> RemoteFile | None:
        name = default_projector_file(self._sizes())
        return self.file(name) if name else None

    def file(self, path: str) -> RemoteFile:
        return next(f for f in self.files if f.path == path)

    def choose(self, quant: str | None, projector: bool = False) -> RemoteFile:
        """The text file (or mmproj) of format ``quant`` (a format name or a file name);
        the default choice when ``quant`` is None."""
        candidates = self.projector_files if projector else self.text_files
        what = "vision projector (mmproj)" if projector else "text model"
        if not candidates:
            raise HubError(
                f"{self.repo} has no {what} in GGUF format, so SmolChat cannot use it. "
                "Pick a repo from `smolchat models catalog`."
            )
        if quant is None:
            chosen = self.default_projector if projector else self.default_text
            assert chosen is not None
            return chosen
        wanted = quant.strip().upper().replace("-", "_")
        for f in candidates:
            if f.path == quant or f.name == quant or f.format_name.upper() == wanted:
                return f
        have = ", ".join(f.format_name for f in candidates)
        raise HubError(f"{self.repo} has no {what} in {quant}; it has {have}.")

    def to_json(self) -> dict:
        return {"repo": self.repo, "listed_at": self.listed_at, "files": [asdict(f) for f in self.files]}

    @classmethod
    def from_json(cls, data: dict, offline: bool = False) -> RepoListing:
        files = tuple(RemoteFile.checked(f["path"], f["size"], f.get("sha256")) for f in data["files"])
        return cls(data["repo"], files, float(data["listed_at"]), offline)


def _by_size(f: RemoteFile) -> tuple[int, str]:
    return (f.size, f.path)


class Hub:
    """One Hugging Face Hub: the public one unless ``HF_ENDPOINT`` (or ``endpoint``) says otherwise."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
    ) -> None:
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.token = token
        self.cache_dir = Path(cache_dir or paths.models_dir())
        self.offline = constants.HF_HUB_OFFLINE if offline is None else offline

    def list_repo(self, repo: str) -> RepoListing:
        """The repo's GGUF files, from the Hub or, when it cannot be reached, as last listed."""
        repo = check_repo_id(repo)
        if self.offline:
            remembered = self._remembered(repo)
            if remembered is None:
                raise HubUnreachableError(
                    f"Offline mode is on (HF_HUB_OFFLINE), and {repo} has not been listed before."
                )
            return remembered
        try:
            with hub_errors(repo, self.endpoint):
                entries = self._tree(repo)
        except HubUnreachableError:
            remembered = self._remembered(repo)
            if remembered is None:
                raise
            return remembered
        listing = RepoListing(repo, self._gguf_files(repo, entries))
        self._remember(listing)
        return listing

    def file_url(self, repo: str, path: str, revision: str = "main") -> str:
        """Where the Hub serves a file (built here: huggingface_hub's helper keeps the address
        HF_ENDPOINT had when it was imported)."""
        return f"{self.endpoint}/{repo}/resolve/{revision}/{quote(path)}"

    def _tree(self, repo: str) -> list[object]:
        # One attempt with a short timeout rather than HfApi's minute of retries: a person is
        # waiting, and a remembered listing can be shown at once.
        url: str | None = f"{self.endpoint}/api/models/{repo}/tree/main"
        params: dict | None = {"recursive": "true"}
        entries: list[object] = []
        pages: set[str] = set()
        while url:
            if url in pages or len(pages) == MAX_LISTING_PAGES:
                raise self._unreadable_listing(repo, f"it keeps sending more pages ({len(pages)} so far)")
            pages.add(url)
            response = get_session().get(
                url,
                params=params,
                headers=build_hf_headers(token=self.token),
                timeout=LISTING_TIMEOUT_S,
                follow_redirects=True,
            )
            hf_raise_for_status(response)
            try:
                page = response.json()
            except ValueError:
                raise self._unreadable_listing(repo, "it is not JSON") from None
            if not isinstance(page, list):
                raise self._unreadable_listing(repo, "it is not a list of files")
            entries += page
            url, params = response.links.get("next", {}).get("url"), None
        return entries

    def _gguf_files(self, repo: str, entries: list[object]) -> tuple[RemoteFile, ...]:
        files = []
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("path"), str):
                raise self._unreadable_listing(repo, f"an entry is {str(e)[:80]!r}")
            if e.get("type") != "file" or not e["path"].lower().endswith(".gguf"):
                continue
            lfs = e.get("lfs")
            if not isinstance(lfs, dict):
                lfs = {}
            try:
                files.append(RemoteFile.checked(e["path"], e.get("size"), lfs.get("oid")))
            except ValueError as bad:
                raise self._unreadable_listing(repo, f"it lists {bad}") from None
        return tuple(files)

    def _unreadable_listing(self, repo: str, why: str) -> HubAnswerError:
        return HubAnswerError(
            f"The Hub at {self.endpoint} sent a file list of {repo} that SmolChat cannot use: {why}. "
            "SmolChat stored nothing from it. If HF_ENDPOINT points at a mirror, check that mirror."
        )

    def _listing_path(self, repo: str) -> Path:
        host = self.endpoint.split("://", 1)[-1].replace(":", "_").replace("/", "_")
        return paths.cache_dir() / "hub-listings" / host / (repo.replace("/", "--") + ".json")

    def _remember(self, listing: RepoListing) -> None:
        try:
            write_json(self._listing_path(listing.repo), listing.to_json(), indent=None)
        except OSError:
            pass  # only a convenience for later offline use

    def _remembered(self, repo: str) -> RepoListing | None:
        try:
            return RepoListing.from_json(json.loads(self._listing_path(repo).read_text()), offline=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None


@contextmanager
def hub_errors(repo: str, endpoint: str, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into messages for a person."""
    try:
        yield
    except errors.GatedRepoError as e:
        raise GatedRepoError(
            f"{repo} is gated: accept its terms on {endpoint}/{repo} while logged in, then log in here "
            "with `hf auth login` (or set HF_TOKEN) and try again."
        ) from e
    except errors.RepositoryNotFoundError as e:
        raise RepoNotFoundError(
            f"There is no model repo named {repo} on the Hub (or it is private). Check the spelling: "
            "owner/name, as in the repo's address."
        ) from e
    except errors.RevisionNotFoundError as e:
        raise RepoNotFoundError(f"{repo} has no branch 'main' on the Hub.") from e
    except errors.RemoteEntryNotFoundError as e:
        raise FileGoneError(
            f"{filename or 'A file'} is no longer in {repo} on the Hub; list the repo again "
            f"(`smolchat models list {repo}`) and pick one of its files."
        ) from e
    except errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise HubError(f"The Hub answered with an error ({status}) for {repo}; try again in a minute.") from e
    except (httpx2.DecodingError, httpx2.TooManyRedirects, httpx2.InvalidURL, ValueError) as e:
        raise HubAnswerError(
            f"The Hub at {endpoint} sent an answer about {filename or repo} that SmolChat cannot read ({e}). "
            "Try again later; if HF_ENDPOINT points at a mirror, check that mirror."
        ) from e
    except (httpx2.TransportError, errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, ConnectionError) as e:
        raise HubUnreachableError(
            f"Cannot reach the Hugging Face Hub at {endpoint}. Check the internet connection; "
            "installed models keep working offline."
        ) from e
