"""Fetching a missing ImageNet weight file from its official URL, verified before it is used.

`--pretrained` looks for the file in config.weights_dir() (models/backbones.py). When it is
missing and downloading is allowed, `fetch` streams the official URL into a temporary file
beside the destination (`.NAME.<pid>.part`), hashes it on the way, and renames it to NAME
only once the transfer is complete (as many bytes as the server announced) and the SHA-256
matches. Anything else deletes the temporary file and raises `DownloadError`, so a half
written or tampered file is never found under the real name.

What the hash is checked against (`expected_sha256`):
- torchvision's files carry the first 8+ hex digits of their SHA-256 in their name
  (`resnet50-0676ba61.pth`), the convention torch.hub checks too;
- other files are looked up in `KNOWN_SHA256` by name. The Caffe VGG16 of
  jcjohnson/pytorch-vgg (`vgg16-00b39a1b.pth`) has hex digits in its name, but its author
  publishes no checksum and does not say they are a SHA-256 prefix, and we could not hash
  the file here (no network while this was written); so its entry is None: the file is
  downloaded, its SHA-256 printed for the user to record, and it is checked only by the
  strict, weights-only load that follows (every key and shape of torchvision's VGG16).
- hszhao/semseg's `resnet*_v2.pth` live in a Google Drive folder without per-file URLs:
  they cannot be fetched by a program, and the error asks for them by hand as before.

`SEG_OFFLINE=1` in the environment, or a training script's `--no-download` (which runs the
model's construction inside `downloads_allowed(False)`), forbids every download; the
missing-file error then stays the one that names the path and the URL.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

# SHA-256 of weight files whose names do not carry it, by file name. None: no published
# hash is known (see the module docstring); the download is then checked by loading only.
KNOWN_SHA256: dict[str, str | None] = {
    "vgg16-00b39a1b.pth": None,
}

# torchvision (and torch.hub) names: NAME-<first hex digits of the SHA-256>.EXT
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_CHUNK = 1 << 20
_allowed = True


class DownloadError(RuntimeError):
    """A download that failed or did not verify; nothing was left under the destination name."""


def offline() -> bool:
    """True when SEG_OFFLINE is set to anything but '', '0' or 'false'."""
    return os.environ.get("SEG_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def download_allowed() -> bool:
    return _allowed and not offline()


@contextlib.contextmanager
def downloads_allowed(allowed: bool) -> Iterator[None]:
    """Allow or forbid downloads while building a model (a training script's --download / --no-download)."""
    global _allowed
    previous, _allowed = _allowed, allowed
    try:
        yield
    finally:
        _allowed = previous


def expected_sha256(filename: str) -> str | None:
    """The SHA-256 (or its prefix) that `filename` must have; None when none is known.

    A name in torchvision's convention that is also in KNOWN_SHA256 takes the table's
    entry: an 8-digit suffix is only known to be a hash where its publisher says so.
    """
    if filename in KNOWN_SHA256:
        return KNOWN_SHA256[filename]
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def fetch(url: str, destination: str | os.PathLike, sha256: str | None, *, progress: bool = True,
          timeout: float = 60.0) -> Path:
    """Download `url` to `destination`, verified against `sha256` (a full hash or a prefix of one).

    Raises DownloadError, naming the URL and the destination, on a refused connection, an
    HTTP error, a transfer that ends early, or a hash that differs (naming both hashes);
    the partial file is deleted in every case and `destination` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    print(f"downloading {url} to {destination}", file=sys.stderr, flush=True)
    try:
        digest, size = _stream(url, partial, progress, timeout)
        if sha256 is not None and not digest.startswith(sha256.lower()):
            raise DownloadError(f"{url} downloaded with SHA-256 {digest}, but {destination.name} must have SHA-256 "
                                f"{sha256}{'...' if len(sha256) < 64 else ''}; the download was deleted. The file "
                                f"on the server may have changed or been tampered with: check the URL, or fetch "
                                f"a copy you trust into {destination.parent}")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    if sha256 is None:
        print(f"note: no published SHA-256 is known for {destination.name}; it was downloaded with SHA-256 "
              f"{digest} ({size} bytes) and is checked only by loading it", file=sys.stderr, flush=True)
    else:
        print(f"verified {destination.name}: SHA-256 {digest[:16]}... ({size} bytes)", file=sys.stderr, flush=True)
    return destination


def _stream(url: str, partial: Path, progress: bool, timeout: float) -> tuple[str, int]:
    """Write the response body into `partial`, flushed to disk; (its SHA-256, its size)."""
    hasher, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            show = progress and sys.stderr.isatty()
            with open(partial, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                  desc=partial.name[1:].rsplit(".", 2)[0], disable=not show) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except http.client.IncompleteRead as err:
        raise DownloadError(f"the transfer of {url} ended early ({size + len(err.partial)} of "
                            f"{size + len(err.partial) + (err.expected or 0)} bytes); the partial file was "
                            f"deleted. Run again to retry") from None
    except urllib.error.HTTPError as err:
        raise DownloadError(f"could not download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:  # refused, reset, no route, timed out
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not download {url}: {reason}. Without network access, fetch the file "
                            f"elsewhere and copy it into {partial.parent} (or set SEG_WEIGHTS to the folder "
                            f"that holds it)") from None
    except OSError as err:  # the local side: a full disk, a folder without write permission
        raise DownloadError(f"could not write the download of {url} to {partial.parent}: {err}") from None
    if total is not None and size != total:
        raise DownloadError(f"the transfer of {url} ended early ({size} of {total} bytes); the partial file was "
                            f"deleted. Run again to retry")
    return hasher.hexdigest(), size
