"""download(): fetch the paper's datasets from their official addresses (facts section 3).

Each archive is streamed into <root>/downloads/<file>.part with a progress bar, resumed after an
interruption (HTTP Range), checked (size where known, sha256), renamed into place only when complete, and
extracted idempotently (a marker file records the sha256 of the archive that was extracted). A file that
fails its checks is moved to <file>.corrupt and not extracted.

Checksums: none of these sites publishes a sha256. The sizes of the two COCO image archives are pinned
(train2017.zip 19,336,861,798 bytes, val2017.zip 815,585,330 bytes, as served by images.cocodataset.org);
for every archive without a pinned sha256, the sha256 of the first complete download is recorded in a
sidecar <file>.sha256 (trust on first use) and later downloads must match it.
"""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .files import sha256_file, write_text_atomic
from .paths import data_root


@dataclass(frozen=True)
class Remote:
    """One archive: where it comes from, what it must be, and where its content goes."""

    url: str
    filename: str
    dest: str  # folder below the data root that receives the members
    members: tuple[str, ...]  # names the archive's content folder holds; each is moved into dest
    size: int | None = None  # bytes, when known
    sha256: str | None = None  # hex, when published


_OX = "https://www.robots.ox.ac.uk/~xuji/datasets"
SOURCES: dict[str, tuple[Remote, ...]] = {
    "potsdam": (
        Remote(f"{_OX}/Potsdam.tar.gz", "Potsdam.tar.gz", "potsdam",
               ("imgs", "gt", "unlabelled_train.txt", "labelled_train.txt", "labelled_test.txt")),
    ),
    "cocostuff": (
        Remote("http://images.cocodataset.org/zips/train2017.zip", "train2017.zip", "cocostuff/images",
               ("train2017",), size=19_336_861_798),
        Remote("http://images.cocodataset.org/zips/val2017.zip", "val2017.zip", "cocostuff/images",
               ("val2017",), size=815_585_330),
        Remote("http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
               "stuffthingmaps_trainval2017.zip", "cocostuff/annotations", ("train2017", "val2017")),
        Remote(f"{_OX}/COCOStuff164kCurated.tar.gz", "COCOStuff164kCurated.tar.gz", "cocostuff", ("curated",)),
    ),
}


class DownloadError(RuntimeError):
    """The address could not be reached or the transfer kept failing; the message says what to do."""


class _Interrupted(Exception):
    pass


def download(name: str, root=None, *, sources: dict | None = None, progress: bool = True, retries: int = 3,
             timeout: float = 60.0) -> Path:
    """Fetch, check and extract every archive of dataset `name` ("potsdam" or "cocostuff") under `root`.

    sources: the URL table (default SOURCES; tests inject a local server). Returns <root>/<dataset folder>.
    """
    table = SOURCES if sources is None else sources
    if name not in table:
        raise ValueError(f"unknown download {name!r}: expected one of {sorted(table)}")
    root = data_root(root)
    for remote in table[name]:
        dest = root / remote.dest
        if _extracted(remote, dest):
            continue
        archive = fetch(remote, root / "downloads", progress=progress, retries=retries, timeout=timeout)
        extract(remote, archive, dest)
    return root / table[name][0].dest.split("/")[0]


def _extracted(remote: Remote, dest: Path) -> bool:
    """True when a marker says this archive was extracted, or its members were placed by hand."""
    return (dest / _marker_name(remote)).is_file() or all((dest / m).exists() for m in remote.members)


def _marker_name(remote: Remote) -> str:
    return f".{remote.filename}.extracted"


def _by_hand(remote: Remote, target: Path) -> str:
    dest = target.parent.parent / remote.dest
    return (f"Without network, download {remote.url} elsewhere and place it at {target} (it is checked and "
            f"extracted on the next run), or extract it by hand so that {dest} holds {', '.join(remote.members)}.")


def fetch(remote: Remote, folder: Path, *, progress: bool = True, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download `remote` into folder/<filename> (resuming a .part file) and check it; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / remote.filename, folder / f"{remote.filename}.part"
    if final.is_file():
        verify(remote, final)
        return final
    last: Exception | None = None
    for _attempt in range(max(1, retries)):
        try:
            _transfer(remote, part, progress=progress, timeout=timeout)
            break
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{remote.url} answered HTTP {err.code} {err.reason}. "
                                f"{_by_hand(remote, final)}") from err
        except urllib.error.URLError as err:
            raise DownloadError(f"cannot reach {remote.url}: {err.reason}. {_by_hand(remote, final)}") from err
        except (_Interrupted, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as err:
            last = err
    else:
        size = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"transfer of {remote.url} was interrupted {retries} times ({last}); {part} holds "
                            f"{size} bytes and the next run resumes from there. {_by_hand(remote, final)}")
    verify(remote, part, name=final)
    os.replace(part, final)
    return final


def _transfer(remote: Remote, part: Path, *, progress: bool, timeout: float) -> None:
    """Append the missing bytes of remote.url to `part` (HTTP Range); raise _Interrupted when short."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()
        offset = 0
    if remote.size is not None and offset == remote.size:
        return
    headers = {"User-Agent": "iicrepro-download", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part file is complete
            return
        raise
    with response:
        if response.status != 206:
            offset = 0  # the server ignored the Range header: start again
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else remote.size
        _stream(response, part, offset, expected, progress, remote.filename)
    if expected is not None and part.stat().st_size < expected:
        raise _Interrupted(f"received {part.stat().st_size} of {expected} bytes")


def _stream(response, part: Path, offset: int, expected: int | None, progress: bool, label: str) -> None:
    from tqdm import tqdm

    with open(part, "ab" if offset else "wb") as handle, tqdm(
            total=expected, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
        while True:
            try:
                block = response.read(1 << 20)
            except http.client.IncompleteRead as err:
                handle.write(err.partial)
                raise _Interrupted(f"connection closed early ({err})") from err
            if not block:
                return
            handle.write(block)
            bar.update(len(block))


def verify(remote: Remote, path: Path, name: Path | None = None) -> str:
    """Check size and sha256 (pinned, else the first download's sidecar); reject by renaming to .corrupt."""
    name = name or path
    sidecar = name.with_name(f"{name.name}.sha256")
    size = path.stat().st_size
    digest = sha256_file(path)
    expected = remote.sha256 or (sidecar.read_text().split()[0] if sidecar.is_file() else None)
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"size {size} bytes, expected {remote.size}"
    elif expected is not None and digest != expected:
        problem = f"sha256 {digest}, expected {expected}" + ("" if remote.sha256 else f" (recorded in {sidecar})")
    if problem:
        corrupt = name.with_name(f"{name.name}.corrupt")
        os.replace(path, corrupt)
        raise ValueError(f"{remote.url}: downloaded file rejected ({problem}); moved to {corrupt}, not extracted. "
                         f"Run again to download it afresh.")
    if expected is None:
        write_text_atomic(sidecar, f"{digest}  {name.name}\n")
    return digest


def extract(remote: Remote, archive: Path, dest: Path) -> None:
    """Unpack into a temporary folder, move the members into `dest`, then write the marker (idempotent)."""
    marker = dest / _marker_name(remote)
    if marker.is_file():
        return
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{remote.filename}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _unpack(archive, tmp)
        base = _find_base(tmp, remote.members)
        if base is None:
            raise ValueError(f"{archive} does not hold {', '.join(remote.members)} in one folder")
        for member in remote.members:
            target = dest / member
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(base / member, target)
        write_text_atomic(marker, f"{remote.filename} {archive.stat().st_size} bytes\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unpack(archive: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ValueError(f"{archive}: unsafe member path {member!r}")
            zf.extractall(folder)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(folder, filter="data")  # refuses absolute paths, links out of the folder
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")


def _find_base(folder: Path, members: tuple[str, ...], depth: int = 3) -> Path | None:
    """The shallowest folder (up to `depth` levels down) that holds every member."""
    level = [folder]
    for _ in range(depth + 1):
        for candidate in level:
            if all((candidate / m).exists() for m in members):
                return candidate
        level = [c for parent in level for c in sorted(parent.iterdir()) if c.is_dir()]
    return None
