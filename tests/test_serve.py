"""`facemask serve`: the real server in a subprocess on a free loopback port, spoken to over HTTP; bad requests,
the token, micro-batching; and the page in headless Chromium (Debian's, driven by Playwright)."""
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from facemask.cli import main
from facemask.training.trainer import fit
from tests.test_bad_inputs import bomb_png
from tests.test_photos import group_photo

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def face_run(demo_root, tmp_path_factory):
    from facemask.config import load_config

    out = tmp_path_factory.mktemp("serve")
    return fit(load_config("configs/tiny.yaml", [f"data.root={demo_root / 'train'}", f"train.output_dir={out}",
                                                 f"data.cache_dir={out / 'cache'}", "data.val_fraction=0.34",
                                                 "data.face_crop=hog", "data.resize=letterbox"]))


class Server:
    def __init__(self, run: Path, *args: str):
        # the server's log goes to a file (a pipe nobody reads could fill and stall it) and is shown on failure
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "facemask", "serve", str(run),
                                         "--port", "0", "-q", *args], stdout=subprocess.PIPE, stderr=self.log,
                                        text=True)
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.process.kill()
            raise RuntimeError(f"server did not start: {line} {self.stderr()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.url = f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        self.log.seek(0)
        text = self.log.read()
        return text if len(text) < 6000 else f"{text[:3000]}\n...\n{text[-3000:]}"  # a crash's stack comes first

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
                ) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        except OSError as err:
            raise AssertionError(f"{method} {path}: {err!r}; server exit code: {self.process.poll()} "
                                 f"its log: {self.stderr()}") from err
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, {"raw": data.decode(errors="replace")}

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def multipart(data: bytes, field: str = "file", filename: str = "photo.jpg") -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(face_run):
    running = Server(face_run, "--max-bytes", "300KB", "--max-wait-ms", "50", "--max-megapixels", "2")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def group_jpeg(demo_root, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    group_photo(demo_root, path)
    return path.read_bytes()


def test_the_three_person_photo_gets_three_faces_by_form_and_by_raw_body(server, group_jpeg):
    for body, headers in (multipart(group_jpeg), (group_jpeg, {"Content-Type": "image/jpeg"})):
        status, answer = server.request("POST", "/predict", body, headers)
        assert status == 200, answer
        assert answer["width"] == 1024 and answer["height"] == 768 and answer["ms"] > 0
        assert len(answer["faces"]) == 3 and all(f["status"] == "face" for f in answer["faces"])
        face = answer["faces"][0]
        assert {"box", "score", "mask", "gender", "age", "class", "probs"} <= set(face)
        assert set(face["probs"]) == {"mask", "gender", "age", "classes"} and len(face["probs"]["classes"]) == 18
    status, info = server.request("GET", "/info")
    assert status == 200 and len(info["classes"]) == 18 and info["face_detector"] == "hog"
    assert all("/" not in run for run in info["runs"])  # run names, not the server's paths
    assert server.request("GET", "/health")[1]["status"] == "ok"
    status, page = server.request("GET", "/")
    assert status == 200 and "<title>facemask</title>" in page["raw"]
    assert server.request("GET", "/openapi.json")[0] == 200


EXPECTED = {"over --max-megapixels": "--max-megapixels",
            "PostScript (Pillow would run Ghostscript)": "not an image format facemask reads"}


def bad_requests(tmp_path: Path, group_jpeg: bytes) -> list[tuple[str, str, str, bytes | None, dict, int]]:
    png = tmp_path / "bomb.png"
    bomb_png(png)
    big = group_jpeg * 40  # over --max-bytes 300KB
    many_pixels = io.BytesIO()
    Image.new("RGB", (2000, 1500)).save(many_pixels, "PNG")  # 3 Mpx in a few KB, over --max-megapixels 2
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"
    return [
        ("not an image", "POST", "/predict", *multipart(b"just some text"), 400),
        ("0 bytes", "POST", "/predict", b"", {"Content-Type": "image/jpeg"}, 400),
        ("truncated JPEG", "POST", "/predict", group_jpeg[: len(group_jpeg) // 3], {"Content-Type": "image/jpeg"},
         400),
        ("decompression bomb", "POST", "/predict", *multipart(png.read_bytes(), filename="bomb.png"), 413),
        ("over --max-megapixels", "POST", "/predict", many_pixels.getvalue(), {"Content-Type": "image/png"}, 413),
        ("PostScript (Pillow would run Ghostscript)", "POST", "/predict", eps, {"Content-Type": "image/x-eps"}, 400),
        ("over --max-bytes", "POST", "/predict", *multipart(big), 413),
        ("over --max-bytes, raw", "POST", "/predict", big, {"Content-Type": "image/jpeg"}, 413),
        ("missing field", "POST", "/predict", *multipart(group_jpeg, field="photo"), 400),
        ("wrong method", "GET", "/predict", None, {}, 405),
        ("unknown path", "GET", "/../../etc/passwd", None, {}, 404),
        ("a file name as a path", "GET", "/app.js/../../facemask/cli.py", None, {}, 404),
    ]


def test_every_bad_request_gets_its_4xx_json_and_the_server_keeps_serving(server, group_jpeg, tmp_path):
    for name, method, path, body, headers, code in bad_requests(tmp_path, group_jpeg):
        status, answer = server.request(method, path, body, headers)
        assert status == code, (name, status, answer)
        assert isinstance(answer.get("error"), str) and answer["error"], (name, answer)
        assert str(tmp_path) not in answer["error"]
        assert EXPECTED.get(name, "") in answer["error"], (name, answer)
        status, answer = server.request("POST", "/predict", group_jpeg, {"Content-Type": "image/jpeg"})
        assert status == 200 and len(answer["faces"]) == 3, name  # the next good request is answered


def test_concurrent_requests_are_micro_batched(face_run, group_jpeg):
    running = Server(face_run, "--max-wait-ms", "1000", "--max-batch", "4")  # long enough to see batches form

    def one(_):
        return running.request("POST", "/predict", group_jpeg, {"Content-Type": "image/jpeg"})
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(16)))
    finally:
        running.stop()
    assert all(status == 200 for status, _ in answers)
    assert max(answer["batch"] for _, answer in answers) > 1  # requests shared network passes
    assert max(answer["batch"] for _, answer in answers) <= 4  # never more than --max-batch
    first = answers[0][1]["faces"]
    assert all(answer["faces"] == first for _, answer in answers)  # batching does not change the answers


def test_the_token_is_enforced_when_set(face_run, group_jpeg):
    running = Server(face_run, "--token", TOKEN)
    try:
        for path, method, body in (("/predict", "POST", group_jpeg), ("/info", "GET", None),
                                   ("/openapi.json", "GET", None), ("/docs", "GET", None)):
            assert running.request(method, path, body)[0] == 401, path
            assert running.request(method, path, body, {"Authorization": "Bearer wrong"})[0] == 401, path
            assert running.request(method, path, body, {"Authorization": f"Bearer {TOKEN}"})[0] == 200, path
        assert running.request("GET", "/health")[0] == 200  # liveness needs no token
        assert running.request("GET", "/")[0] == 200  # the static page (it asks for the token)
    finally:
        running.stop()


def test_binding_beyond_loopback_needs_a_token_or_insecure(face_run, capsys):
    assert main(["serve", str(face_run), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "--insecure" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", str(face_run), "--max-bytes", "lots"]) == 2
    assert "--max-bytes" in capsys.readouterr().err
    assert main(["serve", str(face_run), str(face_run), "--mask-weights", "1"]) == 2
    assert "--mask-weights has 1 values for 2 runs" in capsys.readouterr().err


def test_the_page_answers_an_uploaded_photo_in_headless_chromium(server, demo_root, tmp_path, chromium):
    executable = chromium
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (Python) is a dev dependency: pip install -e '.[dev]'")
    photo = tmp_path / "group.jpg"
    group_photo(demo_root, photo)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=30_000)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            faces = page.locator("#faces li.face")
            assert faces.count() == 3
            text = faces.first.inner_text()
            for label in ("mask", "gender", "age"):
                assert page.locator(f"#faces li.face .answer.{label}").count() == 3
            assert any(word in text for word in ("wear", "incorrect", "not wear"))
            assert "ms on the server" in page.inner_text("#timing")
            assert page.evaluate("document.getElementById('canvas').width") == 1024
            # a box is drawn: the middle of each face box's left edge has the colour of its mask answer
            colours = {"wear": (31, 136, 61), "incorrect": (191, 135, 0), "not wear": (207, 34, 46)}
            boxes = page.evaluate("""() => {
                const ctx = document.getElementById('canvas').getContext('2d');
                return window.lastFaces.map((f) => {
                    const [l, t, r, b] = f.box;
                    return [f.mask, Array.from(ctx.getImageData(l, Math.round((t + b) / 2), 1, 1).data)];
                });
            }""")
            assert len(boxes) == 3
            for mask, pixel in boxes:
                assert all(abs(a - b) <= 2 for a, b in zip(pixel[:3], colours[mask])), (mask, pixel)
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000 and Image.open(shot).size[0] == 1200
            page.set_input_files("#file", str(Path(__file__)))  # not an image: the server's error is shown
            page.wait_for_selector("body[data-state=error]", timeout=30_000)
            assert "400" in page.inner_text("#error") and "cannot be decoded" in page.inner_text("#error")
            assert not errors, errors
            artifacts = Path(os.environ.get("FACEMASK_TEST_ARTIFACTS", tmp_path))
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, artifacts / "serve-page.png")
        finally:
            browser.close()


def test_serve_scans_with_a_masked_face_filter_and_shows_its_name_not_its_path(server, face_run, demo_root,
                                                                             masked_filter):
    from tests.test_photos import masked_faces_bare_filter_misses

    missed = masked_faces_bare_filter_misses(demo_root)
    running = Server(face_run, "--masked-faces", str(masked_filter))
    try:
        status, info = running.request("GET", "/info")
        assert status == 200 and info["masked_faces"] == "masked.svm", info  # the name, not the server's path
        found = 0
        for photo in missed:
            body = Path(photo).read_bytes()
            plain = server.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})[1]
            assert [f["status"] for f in plain["faces"]] == ["no_face"], plain
            answer = running.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})[1]
            found += any(f["status"] == "face" for f in answer["faces"])
        assert found >= 0.4 * len(missed), (found, len(missed))  # as in photos mode: 9 of 16 measured there
    finally:
        running.stop()
