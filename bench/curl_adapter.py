"""What a C HTTP client would save the kit's page path: an experiment, not the kit.

    .venv/bin/python bench/curl_adapter.py --rounds 3            # 100,000 events, in turns

Every note since the twenty-fourth session measured the page workers' HTTP as a third of the GIL time
of a load (about 0.67 ms a request: requests, urllib3 and http.client in Python). pycurl does a whole
request in C, outside the GIL. This runs ``bench/load_speed.py --only kit,floor`` in turns, once as
the kit is and once with the kit's ``DeadlineAdapter`` replaced by a minimal pycurl adapter (``_Curl``
below: status, headers and body into a ``requests.Response``; no deadlines, cookies, proxies or
certificates, so not a transport the kit could ship as it is). pycurl is installed on first use into
``bench/.peers/curl`` (gitignored), not into the kit's environment.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "bench" / ".peers" / "curl"
ENV = "BENCH_CURL_ADAPTER"  # read by bench/load_speed.py's kit loader


def install() -> None:
    if not (TARGET / "pycurl.py").exists() and not any(TARGET.glob("pycurl*.so")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(TARGET), "pycurl"],
                       check=True)


def patch() -> None:
    """Replaces the kit's adapter with ``_Curl`` for every session made from now on (in a loader's child)."""
    import io
    import threading

    sys.path.insert(0, str(TARGET))
    import pycurl
    import requests
    from requests.adapters import BaseAdapter
    from requests.structures import CaseInsensitiveDict
    from requests.utils import get_encoding_from_headers

    from analytics_kit.fetch import transport

    class _Curl(BaseAdapter):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__()
            self.local = threading.local()

        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            curl = getattr(self.local, "curl", None)
            if curl is None:
                curl = self.local.curl = pycurl.Curl()
                curl.setopt(pycurl.BUFFERSIZE, 512 * 1024)
            head, body = io.BytesIO(), io.BytesIO()
            curl.setopt(pycurl.URL, request.url)
            curl.setopt(pycurl.CUSTOMREQUEST, request.method)
            curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in request.headers.items()])
            curl.setopt(pycurl.WRITEDATA, body)
            curl.setopt(pycurl.HEADERFUNCTION, head.write)
            try:
                curl.perform()
            except pycurl.error as error:
                raise requests.ConnectionError(str(error), request=request) from None
            lines = head.getvalue().decode("latin-1").split("\r\n")
            response = requests.Response()
            response.status_code = curl.getinfo(pycurl.RESPONSE_CODE)
            response.headers = CaseInsensitiveDict(
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line))
            response.reason = lines[0].split(" ", 2)[-1]
            response._content, response._content_consumed = body.getvalue(), True
            response.encoding = get_encoding_from_headers(response.headers)
            response.url, response.request, response.connection = request.url, request, self
            return response

        def close(self) -> None:
            pass

    transport.DeadlineAdapter = _Curl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    install()
    ratios: dict[str, list[float]] = {"requests": [], "pycurl": []}
    for round_ in range(args.rounds):
        for variant in (("requests", "pycurl") if round_ % 2 == 0 else ("pycurl", "requests")):
            env = {**os.environ, ENV: "1"} if variant == "pycurl" else {k: v for k, v in os.environ.items() if k != ENV}
            out = subprocess.run([sys.executable, str(ROOT / "bench" / "load_speed.py"), "--events", str(args.events),
                                  "--only", "kit,floor", "--rounds", "1"], env=env, capture_output=True, text=True,
                                 check=True).stdout
            ratio = float(re.search(r"kit / floor-seq, load only +([\d.]+)", out).group(1))
            ratios[variant].append(ratio)
            print(f"round {round_ + 1}, {variant:8}: kit / floor-seq {ratio:.3f}", flush=True)
    for variant, values in ratios.items():
        rounds = ", ".join(f"{v:.3f}" for v in values)
        print(f"median kit / floor-seq with {variant}: {statistics.median(values):.3f}  ({rounds})")


if __name__ == "__main__":
    main()
