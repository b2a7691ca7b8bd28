"""Load on `facemask serve`, on loopback only, beside the offline rate of the same run on the same photos, measured in
the same benchmark run: requests/s, p50 / p95 / p99 latency and errors at 1, 4 and 16 concurrent clients (each
level bounded to --seconds and --max-requests).

    python benchmarks/serve_load.py RUN [--photos DIR] [--clients 1 4 16] [--seconds 30] [--max-requests 5000]

The offline rate is `facemask.load(RUN).predict(photos)` in this process, the faster of decoding and detecting
in-process or in one worker process per core (the network batched): what a server on this machine is held to.
Without --photos it uses portraits from facemask's synthetic demo generator (one face each, 384x512 JPEG, like the
competition's).
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import facemask  # noqa: E402
from facemask.data.demo import make_demo_dataset  # noqa: E402
from facemask.io import cpu_count  # noqa: E402


def start_server(run: str, engine: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "facemask", "serve", run, "--port", "0", "-q",
                                "--engine", engine, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline()
    if "http://127.0.0.1:" not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()[-2000:]}")
    return process, int(line.split("http://127.0.0.1:")[1].split()[0])


def load_level(port: int, photos: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    issued = [0]
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                if issued[0] >= max_requests:
                    break
                n = issued[0]
                issued[0] += 1
            body = photos[n % len(photos)]
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": wall, "rps": len(latencies) / wall,
            "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "errors": errors[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder")
    parser.add_argument("--photos", help="a folder of JPEG photos (default: synthetic portraits)")
    parser.add_argument("--count", type=int, default=64, help="synthetic photos to make")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--max-requests", type=int, default=5000, help="at most this many requests per level")
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--serve-args", default="", help="more `facemask serve` options, e.g. '--max-wait-ms 5'")
    args = parser.parse_args(argv)
    if args.photos:
        files = sorted(str(p) for p in Path(args.photos).rglob("*.jp*g"))
    else:
        demo = make_demo_dataset(Path(tempfile.mkdtemp()) / "demo", people=max(2, args.count // 7 + 1),
                                 eval_fraction=1.0 - 1e-9, seed=5)
        files = sorted(str(p) for p in (demo / "eval" / "images").iterdir())[: args.count]
    photos = [Path(f).read_bytes() for f in files]

    model = facemask.load(args.run, engine=args.engine)
    model.predict(files[:4], workers=1)  # warm-up
    rates = {}
    for workers in (1, 0):  # in this process, and one decoding process per core: the faster is the reference
        start = time.perf_counter()
        answered = model.predict(files, workers=workers)
        rates[workers] = len(files) / (time.perf_counter() - start)
    offline = max(rates.values())
    faces = sum(len(f) for f in answered)
    del model

    process, port = start_server(args.run, args.engine, args.serve_args.split())
    try:
        load_level(port, photos, 2, 3.0, 20)  # warm-up
        levels = [load_level(port, photos, clients, args.seconds, args.max_requests) for clients in args.clients]
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"{args.run}: {len(files)} photos ({faces} faces), engine {args.engine}, {cpu_count()} cores; "
          f"offline facemask.load(RUN).predict: {offline:.1f} photos/s (best of in-process {rates[1]:.1f} and "
          f"{cpu_count()} decoding processes {rates[0]:.1f})")
    print(f"{'clients':>8}{'requests':>10}{'req/s':>9}{'x offline':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}")
    for level in levels:
        print(f"{level['clients']:>8}{level['requests']:>10}{level['rps']:>9.1f}{level['rps'] / offline:>11.2f}"
              f"{level['p50']:>9.0f}{level['p95']:>9.0f}{level['p99']:>9.0f}{level['errors']:>8}")
    top = levels[-1]
    print(f"at {top['clients']} clients: {top['rps'] / offline:.2f} x the offline rate (target >= 0.7), p99 "
          f"{top['p99']:.0f} ms (target < 1000), {top['errors']} errors (target 0); median of all levels' p50: "
          f"{statistics.median(level['p50'] for level in levels):.0f} ms")


if __name__ == "__main__":
    main()
