#!/usr/bin/env python3
"""Many machines, measured: the 30,000-execution job at zero model latency on SQLite
(`parallax run`, one process) and on PostgreSQL (`parallax submit` + 1, 2 and 4
`parallax worker --exit-when-idle` processes), side by side in one run.

Job: 100 questions x 10 models x 3 regions x 10 samples = 30,000 executions, job and
endpoint concurrency 64, the project's stub at 0 ms. Wall time is from the start of
`run` (SQLite) or `submit` (PostgreSQL) to the last process's exit; every result is
durably committed by then (each store commits before reporting). Each run is checked:
every execution succeeded, one attempt each, one upstream request per key.

Worker layouts: 1 = one worker for all three regions; 2 = two such workers; 4 =
us-east x2, eu-west, ap-east. PostgreSQL runs in a fresh schema of the server at
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), made and dropped with
`psql`. Only the standard library is used.

Each worker runs under `/usr/bin/time` (its peak RSS) with
`RUST_LOG=parallax_runner::claim=debug,parallax_runner::write=debug`, which logs every
claim's latency (the store call, from asking to the batch in hand) and every committed
batch of outcomes (its latency and size); the table gives p50/p99 over all workers'
claims, the claims that took nothing among them, the commits with their p50 latency and
size, and the largest worker's peak memory; and the wall time split into `submit`, the calls (to
the last committed outcome, from the write lines' timestamps) and the rest (labelling and
exit). The
connection string is used as given: add `?sslmode=disable` to compare without TLS on
localhost (libpq's default, `prefer`, encrypts when the server offers it).

    cargo build --release -p parallax --no-default-features -p parallax-stub
    python3 bench/workers.py [--questions 100] [--samples 10] [--latency-ms 0] [--layouts 1,2,4]

With `--latency-ms`, the stub answers each call after that long, and each line is also given
as a fraction of the ideal schedule (executions x latency / concurrency: every slot busy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MODELS, REGIONS, SYSTEM, WRK_LUA, Stub, real_chat_body, wrk_capacity  # noqa: E402

LAYOUTS = {
    1: [REGIONS],
    2: [REGIONS, REGIONS],
    4: [["us-east"], ["us-east"], ["eu-west"], ["ap-east"]],
}


def write_files(d: Path, questions: int, samples: int, concurrency: int, addrs: dict[str, str]) -> tuple[Path, Path]:
    q = d / "questions.jsonl"
    q.write_text("".join(json.dumps({"id": f"q{i:05d}", "text": f"Question {i}: what is {i} plus {i * 7 % 97}?"}) + "\n" for i in range(questions)))
    spec = d / "spec.yaml"
    spec.write_text(
        f"name: workers-bench\nquestions:\n  - file: {q.name}\nmodels: [{', '.join(MODELS)}]\nregions: [{', '.join(REGIONS)}]\n"
        f'prompt: {{ system: "{SYSTEM}", mode: chat }}\nsampling: {{ temperature: 0, max_tokens: 64, seed: 7 }}\n'
        f"samples: {samples}\nrun: {{ concurrency: {concurrency}, max_attempts: 4, timeout_s: 60 }}\n"
    )
    lines = ["regions:"]
    for r in REGIONS:
        lines += [f"  {r}:", f"    - name: {r}-stub", "      kind: openai-chat", f"      base_url: http://{addrs[r]}/v1",
                  f"      concurrency: {concurrency}", "      models:"]
        lines += [f"        {m}: bench/{m}" for m in MODELS]
    catalog = d / "parallax.yaml"
    catalog.write_text("\n".join(lines) + "\n")
    return spec, catalog


def cpu_seconds(names: set[str], pid: int | None = None) -> float:
    """User + system CPU of every process named in `names` (or of `pid`), with the CPU of
    their reaped children: PostgreSQL's exited backends count in the postmaster's. Only
    meaningful for a server on this host; 0 where /proc cannot be read."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or (pid is not None and int(d.name) != pid):
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if pid is not None or comm in names:
            # Fields 14-17 of stat (utime, stime, cutime, cstime): 12-15 after the comm.
            total += sum(int(x) for x in rest[11:15])
    return total / tick


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-qc", sql], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def verify(parallax: Path, env: dict, job: str, executions: int, stub: Stub) -> None:
    s = json.loads(subprocess.run([str(parallax), "status", job, "--format", "json"], env=env, check=True, capture_output=True, text=True).stdout)
    t = s["total"]
    assert t["succeeded"] == executions and t["attempts"] == executions, f"ledger: {t}"
    total = sum(stub.stats(r)["total_requests"] for r in REGIONS)
    assert total == executions, f"the stub saw {total} requests for {executions} executions"


CLAIM_LINE = re.compile(r"elapsed_us=(\d+) claimed=(\d+)")
WRITE_LINE = re.compile(r"elapsed_us=(\d+) outcomes=(\d+)")
WRITE_TIME = re.compile(r"^(\S+Z)\s.*elapsed_us=\d+ outcomes=", re.M)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", type=Path, default=Path("target/release"))
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=int, default=0, help="the stub's latency per call")
    ap.add_argument("--layouts", default="1,2,4")
    args = ap.parse_args()
    parallax, stub_bin = (args.bin_dir / "parallax").resolve(), (args.bin_dir / "parallax-stub").resolve()
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    executions = args.questions * len(MODELS) * len(REGIONS) * args.samples
    rows = []
    capacity = 0.0
    with tempfile.TemporaryDirectory(prefix="parallax-workers-bench-") as tmp:
        d = Path(tmp)
        stub = Stub(stub_bin, args.latency_ms, d)
        try:
            spec, catalog = write_files(d, args.questions, args.samples, args.concurrency, stub.addrs)
            env = dict(os.environ, PARALLAX_CONFIG=str(catalog), PARALLAX_NO_PROGRESS="1")
            if args.latency_ms:
                # The stub's own capacity at this concurrency, measured by wrk with the exact
                # body parallax sends (as bench/bench.py does): the floor.
                lua = d / "chat.lua"
                lua.write_text(WRK_LUA.format(body=real_chat_body(parallax, catalog, spec, d / "plan.db")))
                capacity = wrk_capacity(stub, REGIONS[0], lua, args.concurrency, 8, d)["rps"]

            # SQLite, one process: the floor the PostgreSQL figures are held to.
            stub.reset()
            env["PARALLAX_DB"] = str(d / "bench.db")
            t0, stub_cpu0, ru0 = time.monotonic(), cpu_seconds(set(), stub.pid()), resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([str(parallax), "-q", "run", str(spec)], env=env, check=True)
            wall = time.monotonic() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            sqlite_cpu = (0.0, ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, cpu_seconds(set(), stub.pid()) - stub_cpu0)
            job = json.loads(subprocess.run([str(parallax), "status", "--format", "json"], env=env, check=True, capture_output=True, text=True).stdout)[0]["id"]
            verify(parallax, env, job, executions, stub)
            rows.append(("SQLite, `run`, 1 process", wall, {"cpu": sqlite_cpu}))

            for n in [int(x) for x in args.layouts.split(",")]:
                schema = f"bench_{secrets.token_hex(4)}"
                psql(base_url, f"CREATE SCHEMA {schema}")
                try:
                    stub.reset()
                    sep = "&" if "?" in base_url else "?"
                    env["PARALLAX_DB"] = f"{base_url}{sep}options=-c%20search_path%3D{schema}"
                    # The timed part includes creating the tables in the fresh schema (the
                    # read verbs no longer migrate): a fraction of a second.
                    db_cpu0, stub_cpu0 = cpu_seconds({"postgres"}), cpu_seconds(set(), stub.pid())
                    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0, t0_wall = time.monotonic(), time.time()
                    job = subprocess.run([str(parallax), "-q", "submit", str(spec)], env=env, check=True, capture_output=True, text=True).stdout.strip()
                    submitted = time.monotonic() - t0
                    procs = []
                    wenv = dict(env, RUST_LOG="parallax_runner::claim=debug,parallax_runner::write=debug", NO_COLOR="1")
                    for i, regions in enumerate(LAYOUTS[n]):
                        argv = ["/usr/bin/time", "-f", "maxrss_kb=%M", "-o", str(d / f"rss{i}"),
                                str(parallax), "worker", "--exit-when-idle"]
                        for r in regions:
                            argv += ["--region", r]
                        log = open(d / f"worker{i}.log", "w")
                        procs.append(subprocess.Popen(argv, env=wenv, stderr=log))
                    codes = [p.wait() for p in procs]
                    wall = time.monotonic() - t0
                    db_cpu, stub_cpu = cpu_seconds({"postgres"}) - db_cpu0, cpu_seconds(set(), stub.pid()) - stub_cpu0
                    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    # `submit` and the workers (reaped through /usr/bin/time).
                    parallax_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                    for i, code in enumerate(codes):
                        if code != 0:
                            print(f"worker {i} exited {code}:\n" + (d / f"worker{i}.log").read_text()[-3000:], file=sys.stderr)
                    assert codes == [0] * len(procs), f"worker exit codes {codes}"
                    verify(parallax, env, job, executions, stub)
                    logs = [(d / f"worker{i}.log").read_text() for i in range(len(procs))]
                    claims = [(int(a), int(b)) for log in logs for a, b in CLAIM_LINE.findall(log)]
                    writes = [(int(a), int(b)) for log in logs for a, b in WRITE_LINE.findall(log)]
                    rss = max(int(re.search(r"maxrss_kb=(\d+)", (d / f"rss{i}").read_text()).group(1)) for i in range(len(procs)))
                    lat = [a / 1000 for a, _ in claims]
                    # Phases: submit; calls (to the last committed outcome, read off the write
                    # lines' timestamps); the rest (labelling and exit).
                    last_write = max(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
                                     for log in logs for t in WRITE_TIME.findall(log))
                    calls = last_write - t0_wall - submitted
                    extra = {"phases": (submitted, calls, wall - submitted - calls), "claims": len(claims), "empty": sum(1 for _, b in claims if b == 0),
                             "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "rss": rss / 1024,
                             "cpu": (db_cpu, parallax_cpu, stub_cpu),
                             "writes": len(writes), "write_p50": percentile([a / 1000 for a, _ in writes], 0.5),
                             "write_rows": percentile([b for _, b in writes], 0.5)}
                    rows.append((f"PostgreSQL, `submit` + {n} worker{'s' if n > 1 else ''} ({' / '.join('+'.join(l) for l in LAYOUTS[n])})", wall, extra))
                finally:
                    psql(base_url, f"DROP SCHEMA {schema} CASCADE")
        finally:
            stub.stop()
    sqlite_eps = executions / rows[0][1]
    latency = f"{args.latency_ms} ms latency" if args.latency_ms else "zero latency"
    print(f"{executions} executions, {latency}, job and endpoint concurrency {args.concurrency}, {os.cpu_count()} cores")
    if args.latency_ms:
        # The ideal schedule: every slot busy from the first call to the last.
        ideal = executions * args.latency_ms / 1000 / args.concurrency
        print(f"ideal schedule (executions x latency / concurrency): {ideal:.2f} s")
        print(f"stub capacity (wrk -c{args.concurrency}, the body parallax sends): {capacity:,.0f} requests/s,"
              f" so {executions / capacity:.2f} s for the job")
    print()
    ideal = executions * args.latency_ms / 1000 / args.concurrency
    print("| store and processes | wall s | submit / calls / labels s | executions/s | vs SQLite | vs ideal | wall ÷ stub capacity | claims (empty) | claim p50 / p99 ms | commits, p50 ms, p50 outcomes | peak RSS per worker | CPU s: database / parallax / stub |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, wall, x in rows:
        eps = executions / wall
        more = (f"{x['claims']:,} ({x['empty']:,}) | {x['p50']:.2f} / {x['p99']:.2f} | "
                f"{x['writes']:,}, {x['write_p50']:.2f}, {x['write_rows']} | {x['rss']:.1f} MiB") if x and "rss" in x else "— | — | — | —"
        vs_ideal = f"{ideal / wall:.2f}x" if ideal else "—"
        # The measure at a latency: wall over the stub-capacity time (at most 1.10).
        vs_capacity = f"{wall / (executions / capacity):.2f}" if capacity else "—"
        phases = " / ".join(f"{p:.2f}" for p in x["phases"]) if "phases" in x else "—"
        # CPU, from /proc and the workers' rusage: a server on another host reads as 0.
        cpu = " / ".join(f"{c:.1f}" for c in x["cpu"])
        print(f"| {label} | {wall:.2f} | {phases} | {eps:,.0f} | {eps / sqlite_eps:.2f}x | {vs_ideal} | {vs_capacity} | {more} | {cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
