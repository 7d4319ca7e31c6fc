"""A local stand-in for the Hugging Face Hub, for tests and demonstrations without a network.

It answers what huggingface_hub asks (``/api/models/<repo>/tree/<rev>``, ``HEAD`` and ``GET``
``/<repo>/resolve/<rev>/<file>`` with ``Range``) with the headers the real Hub sends, and can
misbehave on demand: drop a connection mid-file, serve slowly, serve bytes that do not match
their sha256, refuse a gated repo, end every answer after a few bytes, ignore ranges (so the
same short body comes again and again), answer a range request with an empty 206 or with
another part of the file than the one asked for, send a file
list that is not one, list hostile file names or hashes, send hostile headers (an
``X-Repo-Commit`` that is a path, say). Like the real Hub it answers 404 to any path it does
not serve. It listens on 127.0.0.1 only and records every request it saw.

    python -m smolchat.testing.fake_hub DIR...   serves each DIR as repo <owner>/<name> (DIR
                                                 is .../<owner>/<name>) until interrupted
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    corrupt: set[str] = field(default_factory=set)  # files served with bytes that do not match their hash
    tree_fields: dict[str, dict] = field(default_factory=dict)  # per file: fields that replace its tree entry's
    tree_body: bytes | None = None  # sent instead of the file list
    tree_headers: dict[str, str] = field(default_factory=dict)  # added to the file list's answer
    headers: dict[str, str] = field(default_factory=dict)  # replace (or add) headers of every file answer

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()

    def served(self, path: str) -> bytes:
        data = self.files[path]
        if path in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return data


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    range: str | None


class FakeHub:
    def __init__(self, repos: dict[str, FakeRepo] | None = None) -> None:
        self.repos: dict[str, FakeRepo] = dict(repos or {})
        self.requests: list[SeenRequest] = []
        self.drop_after: int | None = None  # close the next body download after this many bytes
        self.bytes_per_second: float | None = None  # serve bodies this slowly
        self.down = False  # hang up on every request, as if the network were gone
        self.down_after_drop = False  # ... from the moment drop_after has cut a download short
        self.answer_limit: int | None = None  # end every body cleanly after this many bytes (as if that were all)
        self.ignore_ranges = False  # answer a Range request with 200 and the file from its start
        self.empty_ranges = False  # answer a Range request with 206 and no bytes
        self.wrong_ranges = False  # answer a Range request with 206 and the file from its start
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def downloads(self, filename: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + filename)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no kept-alive connections outliving a test

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(SeenRequest(self.command, path, self.headers.get("Range")))
            if hub.down:
                self.close_connection = True
                return
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path):
                repo = self._repo(m[1])
                if repo is not None:
                    self._tree(repo)
            elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                repo = self._repo(m[1])
                if repo is not None:
                    self._file(repo, m[3], body)
            else:
                self._error(404, "RepoNotFound", "not found")

        def _repo(self, name: str) -> FakeRepo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
            elif repo.gated and "authorization" not in {k.lower() for k in self.headers}:
                self._error(401, "GatedRepo", "Access to this repo is restricted", repo.commit)
                return None
            return repo

        def _tree(self, repo: FakeRepo) -> None:
            entries = [
                {
                    "type": "file",
                    "oid": hashlib.sha1(data).hexdigest(),
                    "size": len(data),
                    "path": name,
                    "lfs": {"oid": repo.sha256(name), "size": len(data), "pointerSize": 134},
                    **repo.tree_fields.get(name, {}),
                }
                for name, data in sorted(repo.files.items())
            ]
            payload = json.dumps(entries).encode() if repo.tree_body is None else repo.tree_body
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in repo.tree_headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _file(self, repo: FakeRepo, name: str, body: bool) -> None:
            if name not in repo.files:
                self._error(404, "EntryNotFound", "Entry not found", repo.commit)
                return
            data = repo.served(name)
            start = 0
            if (rng := self.headers.get("Range")) and not hub.ignore_ranges:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
                if start >= len(data):
                    self._error(416, None, "Range not satisfiable")
                    return
            offset = 0 if hub.wrong_ranges else start  # where the bytes sent begin
            end = len(data)
            if start and hub.empty_ranges:
                end = start
            elif body and hub.answer_limit is not None:
                end = min(offset + hub.answer_limit, len(data))
            headers = {
                "X-Repo-Commit": repo.commit,
                "ETag": f'"{repo.sha256(name)}"',
                "X-Linked-Etag": f'"{repo.sha256(name)}"',
                "X-Linked-Size": str(len(repo.files[name])),
                "Accept-Ranges": "bytes",
                "Content-Length": str(end - offset),
                **({"Content-Range": f"bytes {offset}-{max(end - 1, offset)}/{len(data)}"} if start else {}),
                **repo.headers,
            }
            self.send_response(206 if start else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self._send_body(data[offset:end])

        def _send_body(self, data: bytes) -> None:
            limit, hub.drop_after = hub.drop_after, None
            chunk = 64 << 10
            for offset in range(0, len(data), chunk):
                piece = data[offset : offset + chunk]
                if limit is not None and offset + len(piece) > limit:
                    self.wfile.write(piece[: max(limit - offset, 0)])
                    self.wfile.flush()
                    self.close_connection = True
                    hub.down = hub.down_after_drop
                    return  # the connection closes short of Content-Length
                try:
                    self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if hub.bytes_per_second:
                    time.sleep(len(piece) / hub.bytes_per_second)

        def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            payload = json.dumps({"error": message}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler


def repo_from_folder(folder: Path) -> tuple[str, FakeRepo]:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return f"{folder.parent.name}/{folder.name}", FakeRepo(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--port-file", type=Path, help="write the address here once serving")
    args = parser.parse_args(argv)
    hub = FakeHub(dict(repo_from_folder(f) for f in args.folders)).start()
    if args.port_file:
        args.port_file.write_text(hub.url)
    print(f"serving {', '.join(hub.repos)} at {hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
