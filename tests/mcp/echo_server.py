"""A tiny stdio MCP server (Python standard library only) with one tool, `echo`, which answers
`echo: <text> (from <name>)`. Used by tests/claude_mcp.rs as "another MCP server of the team"
that a spawned agent must keep. `ECHO_SERVER_NAME` names it in answers; every JSON-RPC message
it gets is appended to `$ECHO_SERVER_LOG` when set.

    python3 echo_server.py
"""

import json
import os
import sys

NAME = os.environ.get("ECHO_SERVER_NAME", "echo")
LOG = os.environ.get("ECHO_SERVER_LOG")


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if LOG:
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        method = msg.get("method")
        mid = msg.get("id")
        if mid is None:
            continue
        if method == "initialize":
            version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
            send({"jsonrpc": "2.0", "id": mid, "result": {
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": NAME, "version": "1.0"},
            }})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{
                "name": "echo",
                "description": "Echoes its text.",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            }]}})
        elif method == "tools/call":
            text = msg.get("params", {}).get("arguments", {}).get("text", "")
            send({"jsonrpc": "2.0", "id": mid, "result": {
                "content": [{"type": "text", "text": f"echo: {text} (from {NAME})"}],
            }})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": mid, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": mid,
                  "error": {"code": -32601, "message": f"method not found: {method}"}})


if __name__ == "__main__":
    main()
