"""A loopback stand-in for the Hub endpoints huggingface_hub's upload path calls.

create-repo, create-branch, validate-yaml, preupload (every file 'regular') and commit (NDJSON
with base64 file contents, deletions), for dataset and model repos; for downloads, repo info,
trees, paths-info and resolve URLs (what snapshot_download and load_dataset ask for). Files
land in memory per (repo, revision); tokens are recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content (what the Hub's tree lists as `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324


class FakeHub:
    def __init__(self):
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.tokens: set[str] = set()
        self.commits = 0
        self.repos: dict[str, dict] = {}
        self.validated: list = []
        self.wire_bytes = 0  # request bodies received
        self.content_bytes = 0  # file contents received in commits (decoded)
        self.served_bytes = 0  # file contents sent by resolve URLs (downloads)
        self.served: list[str] = []  # the paths downloaded, in order
        self.received: list[str] = []  # the paths uploaded in commits, in order
        self.drop_after: int | None = None  # once this many commits are in, the next
        self.drops = 0  # `drops` commit requests are cut off (connection closed, no answer)
        self.commit_url: str | None = None  # a commit reply's commitUrl instead of the real one
        self.refuse_after: int | None = None  # once this many commits are in, refuse (400) more
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.wire_bytes += len(body)
                auth = self.headers.get("Authorization", "")
                hub.tokens.add(auth.removeprefix("Bearer "))
                hub.route(self, self.path.split("?")[0], body)

            def do_GET(self):
                hub.serve(self, self.path.split("?")[0], body=True)

            def do_HEAD(self):
                hub.serve(self, self.path.split("?")[0], body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def env(self, token: str, home) -> dict[str, str]:
        """The environment that points huggingface_hub at this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(home),
        }

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def reply(self, handler, payload, status=200):
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def route(self, handler, path, body):
        if "/paths-info/" in path:
            return self.paths_info(handler, path, body)
        if path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            header = content.split("---")[1] if content.startswith("---") else ""
            metadata = yaml.safe_load(header)
            self.validated.append(metadata)
            if not isinstance(metadata, dict):
                return self.reply(handler, {"error": "no YAML metadata"}, 400)
            return self.reply(handler, {"warnings": []})
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
            self.repos[repo_id] = request
            self.files.setdefault((repo_id, "main"), {})
            return self.reply(handler, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id})
        match = re.fullmatch(
            r"/api/(?:datasets|models)/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path
        )
        if not match:
            return self.reply(handler, {"error": f"unknown route {path}"}, 404)
        repo_id, action, revision = match.groups()
        if action == "branch":
            self.files.setdefault((repo_id, revision), dict(self.files.get((repo_id, "main"), {})))
            return self.reply(handler, {})
        if action == "preupload":
            files = json.loads(body)["files"]
            return self.reply(
                handler,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                },
            )
        if self.drop_after is not None and self.commits >= self.drop_after and self.drops:
            self.drops -= 1
            handler.close_connection = True
            handler.connection.shutdown(2)
            return None
        if self.refuse_after is not None and self.commits >= self.refuse_after:
            return self.reply(handler, {"error": "commit refused (test)"}, 400)
        store = self.files.setdefault((repo_id, revision), {})
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                content = base64.b64decode(item["value"]["content"])
                store[item["value"]["path"]] = content
                self.content_bytes += len(content)
                self.received.append(item["value"]["path"])
            elif item["key"] == "deletedFile":
                store.pop(item["value"]["path"])
            elif item["key"] == "deletedFolder":
                folder = item["value"]["path"].rstrip("/") + "/"
                for name in [n for n in store if n.startswith(folder)]:
                    del store[name]
        self.commits += 1
        oid = f"{self.commits:040x}"
        return self.reply(
            handler,
            {
                "commitUrl": self.commit_url or f"{self.url}/datasets/{repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": None,
            },
        )

    def store(self, repo_id: str, revision: str) -> dict[str, bytes]:
        """A repo's files at a branch, or at a commit id (which reads main)."""
        if (repo_id, revision) not in self.files and re.fullmatch(r"[0-9a-f]{40}", revision):
            revision = "main"
        return self.files.get((repo_id, revision), {})

    @staticmethod
    def entry(files: dict[str, bytes], path: str) -> dict | None:
        """The tree entry of a file or folder (folders are implied by file paths)."""
        if path in files:
            data = files[path]
            return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
        if any(name.startswith(path.rstrip("/") + "/") for name in files) or path in ("", "/"):
            return {"type": "directory", "path": path.strip("/"), "oid": "0" * 40}
        return None

    def tree(self, files: dict[str, bytes], folder: str, recursive: bool) -> list[dict]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :].split("/")
            depth = len(rest) if recursive else 1
            for level in range(1, depth + 1):
                path = prefix + "/".join(rest[:level])
                entries.setdefault(path, self.entry(files, path))
        return list(entries.values())

    def paths_info(self, handler, path, body):
        match = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/paths-info/(.+)", path)
        repo_id, revision = match.groups()
        files = self.store(repo_id, unquote(revision))
        paths = parse_qs(body.decode()).get("paths", [])
        found = [e for e in (self.entry(files, p) for p in paths) if e is not None]
        return self.reply(handler, found)

    def serve(self, handler, path, body: bool):
        """Downloads: repo info (files and commit), trees, and each file by its resolve URL:
        what snapshot_download and datasets' load_dataset ask for."""
        query = parse_qs(urlsplit(handler.path).query)
        info = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if info:
            _, repo_id, revision = info.groups()
            files = self.store(repo_id, unquote(revision or "main"))
            if repo_id not in self.repos and not files:
                return self.reply(handler, {"error": "Repository not found"}, 404)
            if revision and not files and not re.fullmatch(r"[0-9a-f]{40}", unquote(revision)):
                return self.reply(handler, {"error": f"Revision {revision} not found"}, 404)
            siblings = [{"rfilename": name, "size": len(files[name])} for name in sorted(files)]
            payload = {
                "id": repo_id,
                "sha": f"{self.commits:040x}",
                "siblings": siblings,
                "private": False,
                "lastModified": "2026-01-01T00:00:00.000Z",
            }
            return self.reply(handler, payload)
        tree = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if tree:
            repo_id, revision, folder = tree.groups()
            files = self.store(repo_id, unquote(revision))
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self.reply(handler, self.tree(files, unquote(folder or ""), recursive))
        resolve = re.fullmatch(r"/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        stored = None
        if resolve:
            repo_id, revision, name = resolve.groups()
            stored = self.store(repo_id, unquote(revision)).get(unquote(name))
        if stored is None:
            return self.reply(handler, {"error": f"unknown route {path}"}, 404)
        whole = len(stored)
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", handler.headers.get("Range", ""))
        if ranged:  # what streaming readers ask for (a parquet footer first)
            first, last = ranged.groups()
            start = whole - int(last) if not first else int(first)
            end = whole - 1 if not first or not last else min(int(last), whole - 1)
            stored = stored[max(start, 0) : end + 1]
        handler.send_response(206 if ranged else 200)
        if ranged:
            handler.send_header("Content-Range", f"bytes {max(start, 0)}-{end}/{whole}")
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(stored)))
        handler.send_header("ETag", f'"{hashlib.sha256(stored).hexdigest()}"')
        handler.send_header("X-Repo-Commit", f"{self.commits:040x}")
        handler.end_headers()
        if body:
            handler.wfile.write(stored)
            self.served_bytes += len(stored)
            self.served.append(unquote(name))
