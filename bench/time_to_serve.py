#!/usr/bin/env python3
"""Start `stackctl proxy serve --port PORT` and exit once /v1/models answers 200.

python bench/time_to_serve.py CONFIG PORT      (hyperfine times this)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

config, port = sys.argv[1], sys.argv[2]
proxy = subprocess.Popen(
    [sys.executable, "-m", "stackctl", "--config", config, "proxy", "serve", "--port", port],
    stdout=subprocess.DEVNULL,
)
deadline = time.monotonic() + 20
try:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1) as reply:
                if reply.status == 200:
                    break
        except OSError:
            time.sleep(0.005)
    else:
        sys.exit("the proxy did not serve within 20 s")
finally:
    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=20)
