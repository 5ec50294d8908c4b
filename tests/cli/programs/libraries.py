"""A program whose executors all come from third-party libraries and asyncio.

It prints the same lines with and without poolwatch; ``--wait`` keeps it running until a
line arrives on stdin (for a test to look at the side port first).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiofiles
from requests_futures.sessions import FuturesSession
from tqdm.contrib.concurrent import thread_map


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's spelling
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the output must be the program's own


def fetch_all(port: int) -> list[str]:
    with FuturesSession(max_workers=3) as session:
        futures = [session.get(f"http://127.0.0.1:{port}/item/{i}") for i in range(6)]
        return [f"{r.status_code} {r.text}" for r in (f.result() for f in futures)]


def cube(n: int) -> int:
    return n**3


async def files_and_threads(folder: Path) -> list[str]:
    path = folder / "notes.txt"
    async with aiofiles.open(path, "w") as f:
        await f.write("written by aiofiles\n")
    async with aiofiles.open(path) as f:
        text = (await f.read()).strip()
    sums = await asyncio.gather(*(asyncio.to_thread(sum, range(n)) for n in range(5)))
    return [text, f"to_thread {sums}"]


def main() -> list[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        lines = fetch_all(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    lines.append(f"thread_map {thread_map(cube, range(8), max_workers=4, disable=True)}")
    with tempfile.TemporaryDirectory() as folder:
        lines += asyncio.run(files_and_threads(Path(folder)))
    return lines


if __name__ == "__main__":
    print("\n".join(main()), flush=True)
    if "--wait" in sys.argv:
        sys.stdin.readline()
