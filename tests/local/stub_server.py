"""A stand-in inference server for the local-mode tests: starts in milliseconds, no torch.

    python stub_server.py --port N [--ready-after S] [--exit-after S] [--exit-code C]
                          [--unhealthy-after S]

Serves `GET /health` (503 until `--ready-after` seconds have passed, and again after
`--unhealthy-after`), `POST /chat` (the seed's API: answers {"Result": "echo: <prompt>"}) and
`POST /v1/chat/completions` (the last message echoed, OpenAI-shaped). With `--exit-after` it
exits with `--exit-code` after that many seconds (a crashing container). It prints the port and
the values of KAITO_TEST_* variables at start, so tests can read them from the pod log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--unhealthy-after", type=float, default=None)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *values: object) -> None:
            return

        def _json(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/health":
                self._json(404, {"error": "not found"})
                return
            age = time.monotonic() - started
            healthy = age >= args.ready_after and (
                args.unhealthy_after is None or age < args.unhealthy_after
            )
            self._json(200 if healthy else 503, {"status": "ok" if healthy else "loading"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/chat":
                self._json(200, {"Result": f"echo: {body.get('prompt', '')}"})
            elif self.path == "/v1/chat/completions":
                last = (body.get("messages") or [{}])[-1].get("content", "")
                message = {"role": "assistant", "content": f"echo: {last}"}
                self._json(200, {"object": "chat.completion", "choices": [{"message": message}]})
            else:
                self._json(404, {"error": "not found"})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    config = ""
    if args.config:
        with open(args.config) as handle:
            config = handle.read().strip()
    extra = {k: v for k, v in sorted(os.environ.items()) if k.startswith("KAITO_TEST_")}
    print(f"stub listening on {args.host}:{args.port} config={config!r} env={extra}", flush=True)
    if args.exit_after is not None:

        def stop() -> None:
            time.sleep(args.exit_after)
            print("stub exiting", flush=True)
            os._exit(args.exit_code)

        threading.Thread(target=stop, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
