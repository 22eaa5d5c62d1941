"""download(): resumable transfer, checks, idempotent extraction, clear errors; against a local HTTP server."""
import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iicrepro.data import download
from iicrepro.data.download import SOURCES, DownloadError, Remote

POTSDAM_MEMBERS = ("imgs", "gt", "unlabelled_train.txt", "labelled_train.txt", "labelled_test.txt")


def potsdam_tar() -> bytes:
    """A tar.gz whose top folder holds the Potsdam layout (plus incompressible padding)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        contents = {"POTSDAM/imgs/1.mat": bytes(range(256)) * 400, "POTSDAM/gt/1.mat": b"gt",
                    "POTSDAM/unlabelled_train.txt": b"", "POTSDAM/labelled_train.txt": b"1\n",
                    "POTSDAM/labelled_test.txt": b"", "POTSDAM/padding.bin": hashlib.sha256(b"x").digest() * 4000}
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def images_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("val2017/000000000004.jpg", b"jpeg bytes" * 1000)
    return buf.getvalue()


class Server:
    """http.server on 127.0.0.1 with Range support; can cut the first full transfer of a file in half."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.truncate, self.requests = dict(files), set(), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if self.path in outer.truncate and not start:
                    outer.truncate.discard(self.path)
                    body = body[: len(body) // 2]  # then the connection closes: an interrupted transfer
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    srv = Server({"/Potsdam.tar.gz": potsdam_tar(), "/val2017.zip": images_zip()})
    yield srv
    srv.close()


def table(server, **overrides):
    remote = Remote(f"{server.url}/Potsdam.tar.gz", "Potsdam.tar.gz", "potsdam", POTSDAM_MEMBERS, **overrides)
    return {"potsdam": (remote,)}


def test_official_addresses():
    urls = [r.url for r in SOURCES["cocostuff"] + SOURCES["potsdam"]]
    assert "https://www.robots.ox.ac.uk/~xuji/datasets/Potsdam.tar.gz" in urls
    assert any(u.endswith("images.cocodataset.org/zips/train2017.zip") for u in urls)
    assert any(u.endswith("images.cocodataset.org/zips/val2017.zip") for u in urls)
    assert any("calvin.inf.ed.ac.uk" in u and u.endswith("stuffthingmaps_trainval2017.zip") for u in urls)
    assert any(u.endswith("COCOStuff164kCurated.tar.gz") for u in urls)


def test_interrupted_transfer_resumes_and_extracts(server, tmp_path):
    server.truncate.add("/Potsdam.tar.gz")
    out = download("potsdam", tmp_path, sources=table(server), progress=False, retries=3)
    assert out == tmp_path / "potsdam"
    assert all((out / m).exists() for m in POTSDAM_MEMBERS) and (out / "labelled_train.txt").read_text() == "1\n"
    half = len(server.files["/Potsdam.tar.gz"]) // 2
    assert server.requests == [("/Potsdam.tar.gz", None), ("/Potsdam.tar.gz", f"bytes={half}-")]
    archive = tmp_path / "downloads" / "Potsdam.tar.gz"
    assert archive.read_bytes() == server.files["/Potsdam.tar.gz"]
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (tmp_path / "downloads" / "Potsdam.tar.gz.sha256").read_text().split()[0] == digest  # first use
    assert not (tmp_path / "downloads" / "Potsdam.tar.gz.part").exists()
    download("potsdam", tmp_path, sources=table(server), progress=False)  # idempotent: nothing fetched
    assert len(server.requests) == 2


def test_resume_across_runs(server, tmp_path):
    server.truncate.add("/Potsdam.tar.gz")
    with pytest.raises(DownloadError, match="next run resumes"):
        download("potsdam", tmp_path, sources=table(server), progress=False, retries=1)
    part = tmp_path / "downloads" / "Potsdam.tar.gz.part"
    assert 0 < part.stat().st_size < len(server.files["/Potsdam.tar.gz"])
    assert not (tmp_path / "potsdam" / "imgs").exists()
    received = part.stat().st_size
    download("potsdam", tmp_path, sources=table(server), progress=False, retries=1)
    assert server.requests[-1] == ("/Potsdam.tar.gz", f"bytes={received}-")
    assert (tmp_path / "potsdam" / "imgs" / "1.mat").is_file()


def test_corrupted_file_is_rejected_and_not_extracted(server, tmp_path):
    with pytest.raises(ValueError, match="rejected.*sha256"):
        download("potsdam", tmp_path, sources=table(server, sha256="0" * 64), progress=False)
    assert (tmp_path / "downloads" / "Potsdam.tar.gz.corrupt").is_file()
    assert not (tmp_path / "downloads" / "Potsdam.tar.gz").exists()
    assert not (tmp_path / "potsdam" / "imgs").exists()
    with pytest.raises(ValueError, match="rejected.*size"):
        download("potsdam", tmp_path / "b", sources=table(server, size=123), progress=False)
    assert not (tmp_path / "b" / "potsdam" / "imgs").exists()


def test_changed_file_fails_the_recorded_checksum(server, tmp_path):
    download("potsdam", tmp_path, sources=table(server), progress=False)
    (tmp_path / "downloads" / "Potsdam.tar.gz").unlink()
    for marker in (tmp_path / "potsdam").glob(".*.extracted"):
        marker.unlink()
    (tmp_path / "potsdam" / "imgs" / "1.mat").unlink()
    (tmp_path / "potsdam" / "imgs").rmdir()
    server.files["/Potsdam.tar.gz"] = potsdam_tar() + b"tampered"
    with pytest.raises(ValueError, match="recorded in"):
        download("potsdam", tmp_path, sources=table(server), progress=False)
    assert not (tmp_path / "potsdam" / "imgs").exists()


def test_archive_without_the_members_leaves_nothing(server, tmp_path):
    bad = {"potsdam": (Remote(f"{server.url}/val2017.zip", "val2017.zip", "potsdam", POTSDAM_MEMBERS),)}
    with pytest.raises(ValueError, match="does not hold"):
        download("potsdam", tmp_path, sources=bad, progress=False)
    assert list((tmp_path / "potsdam").iterdir()) == []
    ok = {"coco": (Remote(f"{server.url}/val2017.zip", "val2017.zip", "cocostuff/images", ("val2017",)),)}
    download("coco", tmp_path, sources=ok, progress=False)
    assert (tmp_path / "cocostuff" / "images" / "val2017" / "000000000004.jpg").is_file()


def test_unreachable_address_gives_a_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Potsdam.tar.gz"
    remote = Remote(url, "Potsdam.tar.gz", "potsdam", POTSDAM_MEMBERS)
    with pytest.raises(DownloadError) as info:
        download("potsdam", tmp_path, sources={"potsdam": (remote,)}, progress=False, timeout=5)
    message = str(info.value)
    assert url in message and "place it at" in message and str(tmp_path / "downloads" / "Potsdam.tar.gz") in message


def test_missing_file_on_server(server, tmp_path):
    remote = Remote(f"{server.url}/nothing.zip", "nothing.zip", "x", ("y",))
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("x", tmp_path, sources={"x": (remote,)}, progress=False)
    with pytest.raises(ValueError, match="unknown download"):
        download("imagenet", tmp_path, progress=False)
