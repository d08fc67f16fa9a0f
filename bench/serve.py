#!/usr/bin/env python3
"""`parallax serve`, measured: how many `GET /api/v1/jobs/{id}/executions` pages a second
the API sustains, and how long an execution takes from its commit to a client of the event
stream.

1. Pages. A 3,000-execution job (100 questions x 10 models x 3 regions, the stub at 0 ms)
   is submitted over the API and run by the server's runner. Then `--clients` threads walk
   the job's pages (100 rows each, keyset cursors, keep-alive connections) for
   `--seconds`; the figure is pages (and rows) a second over all threads. The Python
   client costs time too (it parses every page): that figure is a lower bound. Where
   `wrk` is installed (Debian: `wrk`), it also asks one mid-job page over 2 x `--clients`
   connections for `--seconds`: closer to what the server itself sustains.
2. Delay. With a stream open, a second job (`--delay-questions` x 10 models x 3 regions,
   the stub at 50 ms, concurrency 8, so executions finish one after another) runs; for
   each execution's first event, delay = the time the client read it - the time its
   attempt was closed in the store (`finished_at_ms`, the same host clock for SQLite;
   on PostgreSQL the database's clock, which on one host is the same clock). Median, p95
   and max are reported. The stream is fed by a horizon that moves every 100 ms.

Only the standard library is used. Needs a release build:

    cargo build --release -p parallax -p parallax-stub
    python3 bench/serve.py [--bin-dir target/release] [--db postgres://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MODELS, REGIONS, Stub  # noqa: E402

TOKEN = "bench-token-" + "0" * 20


def spec(name: str, questions: int, concurrency: int) -> str:
    lines = [f"name: {name}", "questions:"]
    lines += [f"  - {{id: q{i:05d}, text: 'Question {i}: what is {i} plus {i * 7 % 97}?'}}" for i in range(questions)]
    lines += [f"models: [{', '.join(MODELS)}]", f"regions: [{', '.join(REGIONS)}]", f"run: {{concurrency: {concurrency}}}"]
    return "\n".join(lines) + "\n"


class Server:
    def __init__(self, binary: Path, d: Path, db: str, catalog: Path):
        env = dict(os.environ, PARALLAX_API_TOKEN=TOKEN, PARALLAX_NO_PROGRESS="1")
        env.pop("PARALLAX_DB", None)
        self.log = open(d / "serve.stderr", "w+")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--db", db, "--config", str(catalog)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True, cwd=d,
        )
        deadline = time.monotonic() + 60
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise SystemExit(f"parallax serve exited early (rc={self.proc.poll()})")
            m = re.match(r"serving http://([^/]+)/", line)
            if m:
                self.host, self.port = m.group(1).rsplit(":", 1)
                break
            if time.monotonic() > deadline:
                raise SystemExit("parallax serve did not listen in 60 s")
        threading.Thread(target=lambda: [self.log.write(l) for l in self.proc.stderr], daemon=True).start()

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, int(self.port), timeout=60)

    def call(self, method: str, path: str, body: str | None = None, conn=None) -> tuple[int, dict]:
        c = conn or self.conn()
        c.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})

    def submit(self, text: str) -> str:
        status, body = self.call("POST", "/api/v1/jobs", text)
        assert status == 201, body
        return body["job_id"]

    def wait_done(self, job: str) -> None:
        while True:
            _, view = self.call("GET", f"/api/v1/jobs/{job}")
            if view["done"]:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pages(server: Server, job: str, clients: int, seconds: float) -> tuple[float, float]:
    counts = [0] * clients
    rows = [0] * clients
    stop_at = time.monotonic() + seconds

    def walk(i: int) -> None:
        conn = server.conn()
        cursor = ""
        while time.monotonic() < stop_at:
            path = f"/api/v1/jobs/{job}/executions?limit=100" + (f"&cursor={cursor}" if cursor else "")
            status, page = server.call("GET", path, conn=conn)
            assert status == 200, page
            counts[i] += 1
            rows[i] += len(page["items"])
            cursor = page["next_cursor"] or ""

    start = time.monotonic()
    threads = [threading.Thread(target=walk, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return sum(counts) / elapsed, sum(rows) / elapsed


def delays(server: Server, text: str, expected: int) -> list[float]:
    received: dict[int, float] = {}
    ready = threading.Event()
    job_box: dict[str, str] = {}

    def listen() -> None:
        ready.wait()
        conn = server.conn()
        conn.request("GET", f"/api/v1/jobs/{job_box['id']}/events", headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        event, data = None, None
        while len(received) < expected:
            line = r.fp.readline().decode()
            if not line:
                return
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event == "execution" and data:
                e = json.loads(data)
                if e["status"] == "succeeded" and e["execution_id"] not in received:
                    received[e["execution_id"]] = time.time() * 1000
                event, data = None, None

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    job_box["id"] = server.submit(text)
    ready.set()
    t.join(timeout=600)
    out = []
    conn = server.conn()
    for execution_id, at in received.items():
        _, detail = server.call("GET", f"/api/v1/executions/{execution_id}", conn=conn)
        finished = detail["attempts"][-1]["finished_at_ms"]
        out.append(at - finished)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default="target/release")
    p.add_argument("--db", default=None, help="a PostgreSQL URL (a fresh schema is made); default: a SQLite file")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--delay-questions", type=int, default=10)
    args = p.parse_args()
    bins = Path(args.bin_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = str(d / "serve.db")
        schema = None
        if args.db:
            schema = f"serve_bench_{os.getpid()}"
            subprocess.run(["psql", args.db, "-qc", f"CREATE SCHEMA {schema}"], check=True)
            sep = "&" if "?" in args.db else "?"
            db = f"{args.db}{sep}options=-c%20search_path%3D{schema}"
        try:
            for latency, label in [(0, "pages"), (50, "delay")]:
                stub = Stub(bins / "parallax-stub", latency, d)
                lines = ["regions:"]
                for r in REGIONS:
                    lines += [f"  {r}:", f"    - name: {r}-stub", "      kind: openai-chat",
                              f"      base_url: http://{stub.addrs[r]}/v1", "      models:"]
                    lines += [f"        {m}: bench/{m}" for m in MODELS]
                catalog = d / f"catalog-{label}.yaml"
                catalog.write_text("\n".join(lines) + "\n")
                server = Server(bins / "parallax", d, db, catalog)
                try:
                    if label == "pages":
                        job = server.submit(spec("serve-pages", 100, 32))
                        server.wait_done(job)
                        per_s, rows_s = pages(server, job, args.clients, args.seconds)
                        print(f"pages (Python clients walking the cursors): {per_s:,.0f} pages/s ({rows_s:,.0f} rows/s) "
                              f"of 100 rows, {args.clients} keep-alive clients for {args.seconds:.0f} s")
                        if shutil.which("wrk"):
                            url = f"http://{server.host}:{server.port}/api/v1/jobs/{job}/executions?limit=100&cursor=1000"
                            out = subprocess.run(
                                ["wrk", "-t2", f"-c{args.clients * 2}", f"-d{int(args.seconds)}s",
                                 "-H", f"Authorization: Bearer {TOKEN}", url],
                                capture_output=True, text=True, check=True).stdout
                            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
                            lat = re.search(r"Latency\s+(\S+)", out)
                            print(f"pages (wrk, one mid-job page, {args.clients * 2} connections): "
                                  f"{float(m.group(1)):,.0f} pages/s, mean latency {lat.group(1)}")
                    else:
                        n = args.delay_questions * len(MODELS) * len(REGIONS)
                        ds = sorted(delays(server, spec("serve-delay", args.delay_questions, 8), n))
                        print(f"event delay, commit to client, {len(ds)} executions: median {statistics.median(ds):.0f} ms, "
                              f"p95 {ds[int(0.95 * (len(ds) - 1))]:.0f} ms, max {ds[-1]:.0f} ms")
                finally:
                    server.stop()
                    stub.stop()
        finally:
            if schema:
                subprocess.run(["psql", args.db, "-qc", f"DROP SCHEMA {schema} CASCADE"], check=False)
    print(f"store: {'postgres' if args.db else 'sqlite'}; binaries: {bins}")


if __name__ == "__main__":
    main()
