"""`make run`: the example backend on :9001 and fastgw on :8080 in front of it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CURL_LINES = """
Try it (in another terminal):
  curl -i http://127.0.0.1:8080/api/users/42
  curl -i -X POST -d '{"name": "ada"}' http://127.0.0.1:8080/api/users
  curl -i http://127.0.0.1:8080/static/css/site.css
  curl -i http://127.0.0.1:8080/v1/orders/7          # rewritten to /orders/7
  curl -i -X DELETE http://127.0.0.1:8080/api/users  # 405 with Allow
  curl -i http://127.0.0.1:8080/nowhere              # 404, JSON error
  curl -i -H 'x-tenant: acme' http://127.0.0.1:8080/tenants/1   # a Python policy lets it in
  curl -i http://127.0.0.1:8080/tenants/1            # ... and answers 403 without x-tenant
  curl -i http://127.0.0.1:8080/old-docs/intro       # 301 to /docs/intro
  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' \
    http://127.0.0.1:8080/api/users/1; done          # ten 200s, then 429s
Ctrl-C stops both.
"""


def main() -> int:
    backend = subprocess.Popen([sys.executable, str(HERE / "backend.py"), "--port", "9001"])
    try:
        time.sleep(0.3)
        if backend.poll() is not None:
            print("the example backend did not start (is port 9001 free?)", file=sys.stderr)
            return 1
        print(CURL_LINES, flush=True)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "fastgw", "run", "-c", str(HERE / "gateway.yaml")]
        )
        try:
            return gateway.wait()
        except KeyboardInterrupt:
            gateway.send_signal(signal.SIGINT)
            return gateway.wait(timeout=35)
    finally:
        backend.terminate()
        backend.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
