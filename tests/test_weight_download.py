"""Weights that download themselves, against a local HTTP server on 127.0.0.1 (never the internet):
a verified download, a wrong hash, a refused connection, a transfer cut short, and offline mode."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest
import torch
import torchvision

from models import pretrained
from models.backbones import build_backbone
from models.weight_download import DownloadError, downloads_allowed, expected_sha256, fetch


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` {path: bytes}; a path in `cut_short` announces every byte but sends half."""
    files: dict[str, bytes] = {}
    cut_short: set[str] = set()
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in self.cut_short else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("SEG_OFFLINE", raising=False)  # conftest forbids downloads for every other test
    handler = type("Handler", (_Files,), {"files": {}, "cut_short": set(), "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield handler
    httpd.shutdown()
    httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_verified_download_lands_under_its_name(server, tmp_path):
    data = bytes(range(256)) * 5000
    server.files["/w.pth"] = data
    path = fetch(f"{server.base}/w.pth", tmp_path / "w.pth", sha256(data)[:8], progress=False)
    assert path.read_bytes() == data
    assert leftovers(tmp_path) == ["w.pth"]  # no temporary file left


def test_a_wrong_hash_deletes_the_download_and_names_both_hashes(server, tmp_path):
    data = b"not the weights you are looking for" * 1000
    server.files["/w.pth"] = data
    wanted = "0123abcd"
    with pytest.raises(DownloadError) as err:
        fetch(f"{server.base}/w.pth", tmp_path / "w.pth", wanted, progress=False)
    assert wanted in str(err.value) and sha256(data) in str(err.value)
    assert leftovers(tmp_path) == []


def test_a_refused_connection_is_an_error_naming_the_url(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    with pytest.raises(DownloadError, match=f"could not download {url}"):
        fetch(url, tmp_path / "w.pth", None, progress=False)
    assert leftovers(tmp_path) == []


def test_an_interrupted_transfer_leaves_nothing_behind(server, tmp_path):
    data = b"x" * 300_000
    server.files["/w.pth"] = data
    server.cut_short.add("/w.pth")
    with pytest.raises(DownloadError, match="ended early"):
        fetch(f"{server.base}/w.pth", tmp_path / "w.pth", sha256(data)[:8], progress=False)
    assert leftovers(tmp_path) == []


def test_an_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.base}/missing.pth", tmp_path / "w.pth", None, progress=False)
    assert leftovers(tmp_path) == []


def test_the_expected_hash_comes_from_the_name_or_the_table():
    assert expected_sha256("resnet50-0676ba61.pth") == "0676ba61"
    assert expected_sha256("densenet121-a639ec97.pth") == "a639ec97"
    assert expected_sha256("vgg16-00b39a1b.pth") is None  # jcjohnson publishes no SHA-256 (see the module)
    assert expected_sha256("resnet50_v2.pth") is None


@pytest.fixture
def served_resnet18(server, tmp_path, monkeypatch):
    """A random resnet18 state dict served under a torchvision-style name carrying its real hash."""
    source = tmp_path / "source.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), source)
    data = source.read_bytes()
    name = f"resnet18-{sha256(data)[:8]}.pth"
    server.files[f"/models/{name}"] = data
    weights = tmp_path / "weights"
    monkeypatch.setenv("SEG_WEIGHTS", str(weights))
    real_url = pretrained.weight_url
    monkeypatch.setattr(pretrained, "weight_url",
                        lambda arch: f"{server.base}/models/{name}" if arch == "resnet18" else real_url(arch))
    return weights / name, source


def test_pretrained_fetches_a_missing_file_then_uses_it(served_resnet18, server):
    path, source = served_resnet18
    backbone = build_backbone("resnet18", pretrained=True)
    assert path.is_file() and path.read_bytes() == source.read_bytes()
    expected = torch.load(source, weights_only=True)
    assert torch.equal(backbone.layer1[0].conv1.weight, expected["layer1.0.conv1.weight"])
    build_backbone("resnet18", pretrained=True)  # found on disk now: not fetched again
    assert len(server.requests) == 1


def test_offline_keeps_the_missing_file_error(served_resnet18, server, monkeypatch):
    path, _ = served_resnet18
    monkeypatch.setenv("SEG_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("resnet18", pretrained=True)
    assert str(path) in str(err.value) and pretrained.weight_url("resnet18") in str(err.value)
    monkeypatch.delenv("SEG_OFFLINE")
    with downloads_allowed(False), pytest.raises(FileNotFoundError, match="--no-download"):
        build_backbone("resnet18", pretrained=True)
    assert server.requests == [] and not path.parent.exists()


def test_a_training_scripts_no_download_flag_forbids_the_download(served_resnet18, server, tmp_path):
    from utils.engine import TrainConfig, run

    argv = ["--model", "fcn32s", "--backbone", "resnet18", "--pretrained", "--no-download", "--dataset", "shapes",
            "--dataset-kwargs", '{"size": 32, "length": 4}', "--iters", "1", "--batch-size", "2", "--crop-size",
            "32", "--device", "cpu", "--workers", "0", "--run-dir", str(tmp_path / "run")]
    with pytest.raises(FileNotFoundError, match="--no-download"):
        run(TrainConfig(), argv)
    assert server.requests == []
