"""Would a second process for the HTTP work pay on this machine? An experiment, not the kit.

    .venv/bin/python bench/split_process.py                  # 100,000 events, 3 rounds in turns
    .venv/bin/python bench/split_process.py --events 1000000 --rounds 1

Issue 15 wants the kit's load within 1.3x of fetching and parsing the pages alone, and the kit's
Python runs on one core (the GIL) while the demo API has the other. This takes the same toy
pipeline (GET each page with requests in two worker threads, parse it with orjson, turn its
records into an Arrow batch, write it to parquet) three ways, each in a fresh process:

- ``floor``: fetch and parse only, as ``load_speed.py``'s threaded floor;
- ``one``: the whole pipeline in one process;
- ``http-apart``: a child process does the HTTP and pipes each response's bytes to the parent,
  which parses, converts and writes.

Each variant's parquet files are counted against the API's records. The toy's conversion
(``RecordBatch.from_pylist``) is not the kit's, so read the ratio of ``http-apart`` to ``one``,
not its times against the kit's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 100
SINCE = "2025-01-01T00:00:00+00:00"
WORKERS = 2
KEY_ENV = "SPLIT_PROCESS_API_KEY"
VARIANTS = ("floor", "one", "http-apart")


def responses(base_url: str) -> Iterator[tuple[str, bytes]]:
    """(resource, response bytes) for every page of events and customers, in offset order, fetched
    by WORKERS threads with at most twice that many requests in flight."""
    import orjson
    import requests

    local = threading.local()

    def get(url: str, offset: int) -> bytes:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False  # 127.0.0.1 only, never through a proxy
        resp = local.session.get(url, params={"updated_since": SINCE, "offset": offset, "limit": LIMIT,
                                              "api_key": os.environ[KEY_ENV]})
        resp.raise_for_status()
        return resp.content

    for name in ("events", "customers"):
        url = f"{base_url}/v1/{name}"
        first = get(url, 0)
        yield name, first
        total = orjson.loads(first).get("total")
        if total is None or total <= LIMIT:
            continue
        offsets, pending = iter(range(LIMIT, total, LIMIT)), deque()
        with ThreadPoolExecutor(WORKERS) as pool:
            for offset in offsets:
                pending.append(pool.submit(get, url, offset))
                if len(pending) >= 2 * WORKERS:
                    yield name, pending.popleft().result()
            while pending:
                yield name, pending.popleft().result()


def write(pages: Iterator[tuple[str, bytes]], out: Path) -> int:
    """Parses, converts and writes each page; returns the records written."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[str, pq.ParquetWriter] = {}
    written = 0
    for name, content in pages:
        records = orjson.loads(content)["data"]
        if not records:
            continue
        batch = pa.RecordBatch.from_pylist(records)
        if name not in writers:
            writers[name] = pq.ParquetWriter(out / f"{name}.parquet", batch.schema)
        writers[name].write_batch(batch)
        written += len(records)
    for writer in writers.values():
        writer.close()
    return written


def piped(base_url: str) -> Iterator[tuple[str, bytes]]:
    """``responses`` from a child process, framed on its stdout."""
    child = subprocess.Popen([sys.executable, __file__, "--http-child", base_url], stdout=subprocess.PIPE)
    source = child.stdout
    while header := source.read(6):
        name_size, size = int.from_bytes(header[:2], "little"), int.from_bytes(header[2:], "little")
        yield source.read(name_size).decode(), source.read(size)
    if child.wait() != 0:
        raise SystemExit("the HTTP child failed")


def http_child(base_url: str) -> None:
    sink = sys.stdout.buffer
    for name, content in responses(base_url):
        tag = name.encode()
        sink.write(len(tag).to_bytes(2, "little") + len(content).to_bytes(4, "little") + tag + content)
    sink.flush()


def run_variant(variant: str, base_url: str, out: Path) -> None:
    """One variant in this (fresh) process: prints its wall and CPU seconds and the records it saw."""
    import orjson  # imported before the clock starts, as the other benches do
    import pyarrow
    import pyarrow.parquet
    import requests  # noqa: F401

    pyarrow.array([0])  # pyarrow's first array imports pandas (~0.3 s), before the clock too

    started, cpu = time.perf_counter(), time.process_time()
    if variant == "floor":
        import orjson

        records = sum(len(orjson.loads(content)["data"]) for _, content in responses(base_url))
    else:
        records = write(responses(base_url) if variant == "one" else piped(base_url), out)
    print(f"{time.perf_counter() - started:.3f} {time.process_time() - cpu:.3f} {records}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo

    walls: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    print(f"{args.events:,} events + 50 customers, {LIMIT} a page, {WORKERS} worker threads; demo API in a subprocess "
          "on 127.0.0.1; each variant in a fresh process, taking turns")
    with demo.serve(events=args.events, customers=50, process=True) as api, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, KEY_ENV: api.api_key}
        expected = args.events + 50
        for round_ in range(args.rounds):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                out = Path(tmp) / f"{variant}-{round_}"
                out.mkdir()
                done = subprocess.run([sys.executable, __file__, "--variant", variant, api.base_url, str(out)],
                                      env=env, capture_output=True, text=True, timeout=1800)
                if done.returncode:
                    raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
                wall, cpu, records = done.stdout.split()
                if int(records) != expected:
                    raise SystemExit(f"{variant} saw {records} records; the API has {expected}")
                walls[variant].append(float(wall))
                print(f"  round {round_ + 1}: {variant:<10} {float(wall):6.3f} s wall, main process CPU "
                      f"{float(cpu):6.3f} s, {int(records):,} records", flush=True)
    median = {variant: statistics.median(times) for variant, times in walls.items()}
    for variant in VARIANTS:
        print(f"median {variant:<10} {median[variant]:6.3f} s   / floor {median[variant] / median['floor']:.2f}")
    print(f"http-apart / one: {median['http-apart'] / median['one']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http-child":
        http_child(sys.argv[2])
    elif len(sys.argv) > 4 and sys.argv[1] == "--variant":
        run_variant(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    else:
        main()
