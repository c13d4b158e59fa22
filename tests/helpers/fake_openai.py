"""A tiny OpenAI-compatible completions server on 127.0.0.1 for backend tests: ``/v1/models`` lists one
model; ``/v1/completions`` answers token ids ``token_id:N`` (the prompt's last id + 1, ``max_tokens`` times)
with top log-probs, and counts the requests it served (``served``)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeCompletionsServer:
    def __init__(self, name: str = "fake") -> None:
        self.served = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply({"data": [{"id": name}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.served += 1
                n, tok = int(body["max_tokens"]), int(body["prompt"][-1]) + 1
                self._reply({"choices": [{"text": "", "finish_reason": "length", "logprobs": {
                    "tokens": [f"token_id:{tok}"] * n, "token_logprobs": [-0.5] * n,
                    "top_logprobs": [{f"token_id:{tok}": -0.5, "token_id:0": -1.0}] * n}}]})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
