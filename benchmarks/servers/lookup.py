"""A stdio MCP server that answers at once and times itself, for benchmarks/overhead.py.

Stdlib only (no SDK, so no threads, no pydantic): it reads one JSON-RPC line at a time
from stdin with a blocking read and answers on stdout. It speaks just enough of the 2025
protocol for the app's MCP client: `initialize`, `tools/list`, `tools/call`, `ping`.

One tool, `lookup(query)`, read-only (auto tier), answers a fixed line at once.

For every `tools/call` it appends `query<TAB>read<TAB>answered` to the file named by
BENCH_TOOL_LOG, where `read` is `time.monotonic()` just after the request line was read
and `answered` just before the answer is written to the pipe (taking it after the write
would be wrong on a busy machine: the write wakes the app, which may preempt this process
before it reads the clock). On Linux `time.monotonic()` is CLOCK_MONOTONIC, one clock for
every process, so the benchmark can subtract the time the call spent inside this server.
The log line is written after the answer, outside the measured span.
"""

from __future__ import annotations

import json
import os
import sys
import time

TOOL = {
    "name": "lookup",
    "description": "Look a key up (read-only; answers at once).",
    "inputSchema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
    "annotations": {"readOnlyHint": True},
}


def main() -> None:
    log_path = os.environ.get("BENCH_TOOL_LOG")
    log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while line := stdin.readline():
        read = time.monotonic()
        message = json.loads(line)
        if "id" not in message:  # notifications: nothing to answer
            continue
        method, params = message.get("method"), message.get("params") or {}
        answer: dict[str, object] = {"jsonrpc": "2.0", "id": message["id"]}
        query = None
        if method == "initialize":
            answer["result"] = {
                "protocolVersion": params.get("protocolVersion"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-lookup", "version": "1"},
            }
        elif method == "tools/list":
            answer["result"] = {"tools": [TOOL]}
        elif method == "tools/call":
            query = str((params.get("arguments") or {}).get("query"))
            text = f"{query}: 2 matches, TCK-1 flaky login test, TCK-2 slow deploy"
            answer["result"] = {"content": [{"type": "text", "text": text}], "isError": False}
        elif method == "ping":
            answer["result"] = {}
        else:
            answer["error"] = {"code": -32601, "message": f"no method {method}"}
        data = json.dumps(answer).encode() + b"\n"
        answered = time.monotonic()
        stdout.write(data)
        stdout.flush()
        if query is not None and log is not None:
            log.write(f"{query}\t{read!r}\t{answered!r}\n")


if __name__ == "__main__":
    main()
