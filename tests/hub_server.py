"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only).

It implements what the real `huggingface_hub` client calls when it creates a repo, uploads a folder (preupload,
the LFS batch endpoint, the LFS upload PUT, the NDJSON commit), creates a branch, reads repo info / refs / the
file tree, and downloads files (resolve, with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`; LFS
files redirect to a second "CDN" port, like the real Hub redirects to its storage host).

Point the client at it with `HF_ENDPOINT` and `HF_HUB_DISABLE_XET=1` set *before* `huggingface_hub` is imported,
which is why tests run the client in a subprocess: `subprocess.run(..., env=hub.client_env(...))`.

Fault injection: `fail_next(n, pattern, status)` answers the next `n` requests whose path matches `pattern` with
`status`; `require_token({...})` makes writes need a known token (wrong token -> 401, read-only token -> 403);
`stop()` / `start()` take the server down and up again on the same port. Every request is recorded in `requests`
(method, path, whether an Authorization header was present, status): the token itself is never recorded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".ckpt", ".gz", ".h5", ".npy", ".onnx", ".parquet", ".pt", ".pth", ".safetensors", ".zip",
)  # fmt: skip
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
USER = "tester"
WRITE_ENDPOINTS = ("create", "preupload", "commit", "branch", "lfs-batch", "lfs-verify")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FileEntry:
    sha256: str  # content address in the blob store
    size: int
    lfs: bool
    git_oid: str  # git blob id: of the content (regular) or of the LFS pointer (LFS)


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, FileEntry]
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    auth: bool  # an Authorization header was sent (its value is never stored)
    status: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubServer:
    """The Hub's state plus two HTTP listeners on 127.0.0.1: the Hub API and a "CDN" serving LFS blobs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self.tokens: dict[str, str] | None = None  # token -> "write" | "read"; None: any token is accepted
        self._failures: list[list] = []  # [compiled pattern, remaining count, status]
        self._counter = 0
        self.port = _free_port()
        self.cdn_port = _free_port()
        self._servers: list[ThreadingHTTPServer] = []
        self._conns: set[socket.socket] = set()
        self.running = False

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn_port}"

    def start(self) -> HubServer:
        if self.running:
            return self
        for name, port in (("hub", self.port), ("cdn", self.cdn_port)):
            handler = type(f"{name.title()}Handler", (_Handler,), {"hub": self, "kind": name})
            httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(httpd)
        self.running = True
        return self

    def stop(self) -> None:
        """Take the server down: new connections are refused and open keep-alive connections are cut."""
        self.running = False
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        self._servers.clear()
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # ---- knobs for tests -------------------------------------------------------------------------------------
    def fail_next(self, n: int, pattern: str = ".*", status: int = 500) -> None:
        """Answer the next `n` requests whose path matches the regex `pattern` with HTTP `status`."""
        with self.lock:
            self._failures.append([re.compile(pattern), n, status])

    def require_token(self, tokens: dict[str, str] | None) -> None:
        """`{"hf_xxx": "write", "hf_yyy": "read"}`: writes need a write token; None accepts any token."""
        self.tokens = tokens

    def client_env(
        self, hf_home: str | os.PathLike, token: str | None = None, base: dict | None = None
    ) -> dict:
        """Environment for a subprocess whose `huggingface_hub` talks to this server (and to nothing else)."""
        env = dict(os.environ if base is None else base)
        for key in (
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_TOKEN_PATH",
            "TRANSFORMERS_OFFLINE",
            "HF_HUB_CACHE",
        ):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HUB_DISABLE_XET="1",
            HF_HUB_OFFLINE="0",
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="0",
            HF_HUB_ETAG_TIMEOUT="5",
            HF_HUB_DOWNLOAD_TIMEOUT="10",
            TOKENIZERS_PARALLELISM="false",
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def create_repo(self, repo_id: str, private: bool = False) -> None:
        """Create a repo directly (test setup), with the initial `.gitattributes` commit like the Hub."""
        with self.lock:
            if repo_id in self.repos:
                return
            repo = self.repos[repo_id] = Repo(repo_id, private=private)
            data = GITATTRIBUTES.encode()
            entry = FileEntry(self._write_blob(data), len(data), False, git_blob_oid(data))
            self._new_commit(repo, "main", "initial commit", {".gitattributes": entry})

    # ---- inspection for tests --------------------------------------------------------------------------------
    def calls(
        self, method: str | None = None, pattern: str = ".*", server: str | None = None
    ) -> list[Request]:
        rx = re.compile(pattern)
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (server is None or r.server == server)
                and rx.search(r.path)
            ]

    def commits(self, repo_id: str, branch: str = "main") -> list[Commit]:
        """Commits reachable from `branch`, oldest first."""
        with self.lock:
            repo = self.repos[repo_id]
            out, oid = [], repo.branches.get(branch)
            while oid is not None:
                out.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return out[::-1]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self.lock:
            commit = self._commit(self.repos[repo_id], revision)
            return {p: self._read_blob(e.sha256) for p, e in commit.files.items()}

    def entry(self, repo_id: str, path: str, revision: str = "main") -> FileEntry:
        with self.lock:
            return self._commit(self.repos[repo_id], revision).files[path]

    def stored_paths(self) -> list[Path]:
        """Every file the server keeps on disk (blob store), for "the token is written nowhere" checks."""
        return [p for p in self.root.rglob("*") if p.is_file()]

    # ---- storage ---------------------------------------------------------------------------------------------
    def _write_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_dir / sha
        if not path.exists():
            tmp = path.with_name(f".{sha}.tmp-{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def _has_blob(self, sha: str) -> bool:
        return (self.blob_dir / sha).is_file()

    def _read_blob(self, sha: str) -> bytes:
        return (self.blob_dir / sha).read_bytes()

    def _new_commit(self, repo: Repo, branch: str, message: str, files: dict[str, FileEntry]) -> Commit:
        self._counter += 1
        parent = repo.branches.get(branch)
        digest = hashlib.sha1(
            json.dumps(
                [parent, message, self._counter, sorted((p, e.git_oid) for p, e in files.items())]
            ).encode()
        ).hexdigest()
        commit = Commit(oid=digest, parent=parent, message=message, files=files, date=_now())
        repo.commits[digest] = commit
        repo.branches[branch] = digest
        return commit

    def _repo(self, repo_id: str, auth: _Auth, write: bool = False) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not auth.valid):
            raise HubError(404 if auth.valid else 401, "Repository not found", "RepoNotFound")
        if write:
            auth.need_write()
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision)
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Auth:
    present: bool
    valid: bool
    role: str | None
    hub: HubServer

    def need_write(self) -> None:
        if self.hub.tokens is None:
            return
        if not self.present:
            raise HubError(401, "Invalid username or password.")
        if self.role != "write":
            raise HubError(403, "You don't have the rights to write to this repository")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubServer
    kind: str

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def setup(self):
        super().setup()
        with self.hub.lock:
            self.hub._conns.add(self.connection)

    def finish(self):
        with contextlib.suppress(OSError):
            super().finish()
        with self.hub.lock:
            self.hub._conns.discard(self.connection)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---- plumbing --------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _auth(self) -> _Auth:
        header = self.headers.get("Authorization")
        if not header:
            return _Auth(False, False, None, self.hub)
        token = header.split(" ", 1)[-1].strip()
        tokens = self.hub.tokens
        if tokens is None:
            return _Auth(True, True, "write", self.hub)
        if token not in tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return _Auth(True, True, tokens[token], self.hub)

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"
    ):
        self._record.status = status
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self, method: str):
        split = urlsplit(self.path)
        self._query = parse_qs(split.query)
        path = split.path
        self._record = Request(self.kind, method, path, bool(self.headers.get("Authorization")))
        with self.hub.lock:
            self.hub.requests.append(self._record)
        body = self._body() if method in ("POST", "PUT") else b""
        try:
            with self.hub.lock:
                for failure in self.hub._failures:
                    if failure[1] > 0 and failure[0].search(path):
                        failure[1] -= 1
                        raise HubError(failure[2], "Injected failure")
            if self.kind == "cdn":
                return self._cdn(method, path)
            self._route(method, path, body)
        except HubError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            self._json({"error": err.message}, err.status, headers)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # a server bug: make it visible in the test that hits it
            self._json({"error": f"test hub server error: {exc!r}"}, 500)

    def _route(self, method: str, path: str, body: bytes):
        parts = [unquote(p) for p in path.strip("/").split("/")]
        auth = self._auth()
        if parts[:2] == ["api", "whoami-v2"]:
            if not auth.valid:
                raise HubError(401, "Invalid credentials in Authorization header")
            role = auth.role or "write"
            return self._json({"type": "user", "name": USER, "auth": {"accessToken": {"role": role}}})
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body or b"{}"), auth)
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._json({"errors": [], "warnings": []})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            return self._api_model(method, repo_id, rest, body, auth)
        if len(parts) >= 3 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(f"{parts[0]}/{parts[1][: -len('.git')]}", json.loads(body), auth)
        if len(parts) == 2 and parts[0] == "lfs-upload" and method == "PUT":
            return self._lfs_put(parts[1], body)
        if len(parts) == 2 and parts[0] == "lfs-verify" and method == "POST":
            auth.need_write()
            info = json.loads(body)
            if not self.hub._has_blob(info["oid"]):
                raise HubError(404, "Object not found")
            return self._json({"success": True})
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), auth)
        raise HubError(404, f"Not found: {method} {path}")

    # ---- endpoints -------------------------------------------------------------------------------------------
    def _create_repo(self, payload: dict, auth: _Auth):
        auth.need_write()
        if not auth.valid:
            raise HubError(401, "Invalid username or password.")
        if payload.get("type") not in (None, "model"):
            raise HubError(400, "only model repos are supported by the test hub")
        namespace = payload.get("organization") or USER
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._json({"error": "You already created this model repo", "url": url}, 409)
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.hub.create_repo(repo_id, private=private)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _api_model(self, method: str, repo_id: str, rest: list[str], body: bytes, auth: _Auth):
        hub = self.hub
        with hub.lock:
            if method == "GET" and (not rest or rest[0] == "revision"):
                repo = hub._repo(repo_id, auth)
                commit = hub._commit(repo, rest[1] if rest else "main")
                return self._json(self._model_info(repo, commit, blobs="blobs" in self._query))
            if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                repo = hub._repo(repo_id, auth)
                commit = hub._commit(repo, rest[1])
                recursive = self._query.get("recursive", ["False"])[0].lower() in ("1", "true")
                return self._tree(commit, "/".join(rest[2:]), recursive)
            if method == "GET" and rest == ["refs"]:
                repo = hub._repo(repo_id, auth)
                branches = [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                    for b, oid in repo.branches.items()
                ]
                return self._json({"branches": branches, "tags": [], "converts": [], "pullRequests": []})
            if method == "GET" and rest[:1] == ["commits"] and len(rest) == 2:
                repo = hub._repo(repo_id, auth)
                out, commit = [], hub._commit(repo, rest[1])
                while commit is not None:
                    out.append({"id": commit.oid, "title": commit.message, "message": "", "date": commit.date,
                                "authors": [{"user": USER}]})  # fmt: skip
                    commit = repo.commits.get(commit.parent) if commit.parent else None
                return self._json(out)
            if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                repo = hub._repo(repo_id, auth, write=True)
                commit = hub._commit(repo, rest[1])
                return self._json(
                    {"files": [self._upload_mode(f, commit) for f in json.loads(body)["files"]]}
                )
            if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                repo = hub._repo(repo_id, auth, write=True)
                return self._commit(repo, rest[1], body)
            if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                repo = hub._repo(repo_id, auth, write=True)
                if rest[1] in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{rest[1]}")
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                repo.branches[rest[1]] = hub._commit(repo, start).oid
                return self._json({})
        raise HubError(404, f"Not found: {method} /api/models/{repo_id}/{'/'.join(rest)}")

    def _model_info(self, repo: Repo, commit: Commit, blobs: bool) -> dict:
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sib: dict = {"rfilename": path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    pointer = lfs_pointer(entry.sha256, entry.size)
                    sib["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": len(pointer)}
            siblings.append(sib)
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    def _tree(self, commit: Commit, prefix: str, recursive: bool):
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        if prefix and prefix not in commit.files and not any(p.startswith(base) for p in commit.files):
            raise HubError(404, f"{prefix} does not exist", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        out, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            rel = path[len(base) :]
            if "/" in rel:
                dirs = rel.split("/")[:-1]
                for i in range(1, len(dirs) + 1 if recursive else 2):
                    folders.add(base + "/".join(dirs[:i]))
                if not recursive:
                    continue
            item = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                pointer = lfs_pointer(entry.sha256, entry.size)
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(pointer)}
            out.append(item)
        for folder in sorted(folders):
            out.append(
                {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder}
            )
        return self._json(out)

    def _upload_mode(self, f: dict, commit: Commit) -> dict:
        sample = base64.b64decode(f.get("sample", ""))
        lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_SIZE_THRESHOLD or b"\0" in sample
        existing = commit.files.get(f["path"])
        oid = None
        if existing is not None:
            oid = existing.sha256 if existing.lfs else existing.git_oid
        return {
            "path": f["path"],
            "uploadMode": "lfs" if lfs else "regular",
            "shouldIgnore": False,
            "oid": oid,
        }

    def _commit(self, repo: Repo, revision: str, body: bytes):
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.commits[repo.branches[revision]]
        if header.get("parentCommit") and not head.oid.startswith(header["parentCommit"]):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                files[value["path"]] = FileEntry(
                    self.hub._write_blob(data), len(data), False, git_blob_oid(data)
                )
            elif key == "lfsFile":
                if not self.hub._has_blob(value["oid"]):
                    raise HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                pointer = lfs_pointer(value["oid"], value["size"])
                files[value["path"]] = FileEntry(value["oid"], value["size"], True, git_blob_oid(pointer))
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"{value['path']} does not exist", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(folder)]:
                    del files[path]
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        commit = self.hub._new_commit(repo, revision, header.get("summary") or "", files)
        return self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
            }
        )

    def _lfs_batch(self, repo_id: str, payload: dict, auth: _Auth):
        with self.hub.lock:
            self.hub._repo(repo_id, auth, write=True)
        if payload.get("operation") != "upload":
            raise HubError(400, "only LFS uploads are supported by the test hub")
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub._has_blob(obj["oid"]):
                item["actions"] = {
                    "upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.hub.url}/lfs-verify/{obj['oid']}", "header": {}},
                }
            objects.append(item)
        body = json.dumps({"transfer": "basic", "objects": objects}).encode()
        self._send(200, body, content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str, body: bytes):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        with self.hub.lock:
            self.hub._write_blob(body)
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _resolve(self, repo_id: str, revision: str, path: str, auth: _Auth):
        with self.hub.lock:
            repo = self.hub._repo(repo_id, auth)
            commit = self.hub._commit(repo, revision)
            entry = commit.files.get(path)
            if entry is None:
                raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
            data = None if entry.lfs else self.hub._read_blob(entry.sha256)
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.lfs:  # like the Hub: redirect to the storage host, with the file's metadata on the redirect
            headers.update(
                {
                    "Location": f"{self.hub.cdn_url}/lfs-cdn/{entry.sha256}?path={quote(path)}",
                    "ETag": f'"{entry.git_oid}"',
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(entry.size),
                }
            )
            return self._send(302, b"", headers, content_type="text/plain")
        headers["ETag"] = f'"{entry.git_oid}"'
        return self._send(200, data, headers, content_type="application/octet-stream")

    def _cdn(self, method: str, path: str):
        parts = path.strip("/").split("/")
        if method not in ("GET", "HEAD") or len(parts) != 2 or parts[0] != "lfs-cdn":
            raise HubError(404, "Not found")
        if not self.hub._has_blob(parts[1]):
            raise HubError(404, "No such object")
        data = self.hub._read_blob(parts[1])
        headers = {"ETag": f'"{parts[1]}"', "Accept-Ranges": "bytes"}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start : end + 1], headers, content_type="application/octet-stream")
        return self._send(200, data, headers, content_type="application/octet-stream")


@contextlib.contextmanager
def running_hub(root: str | os.PathLike) -> Iterator[HubServer]:
    server = HubServer(root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub(tmp_path_factory) -> Iterator[HubServer]:
    """A fresh test Hub per test; use `hub.client_env(...)` for the subprocess that runs the client."""
    with running_hub(tmp_path_factory.mktemp("hub")) as server:
        yield server
