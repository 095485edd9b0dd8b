"""Drives Switchboard's MCP server with the official MCP Python SDK (PyPI `mcp`, pinned by
scripts/mcp-test-tools.sh) and checks every tool. Run by tests/mcp.rs.

    client.py scenario --mode MODE (--url URL | --stdio CMD ARGS...)
    client.py scenario-tell --url URL      (one team_tell from a to b)
    client.py callers --url URL [--agent-token TOKEN]

Over HTTP every request carries `Authorization: Bearer $SWITCHBOARD_TOKEN` when that variable is
set (the server's token, read by the test from `server.token` beside the database, as a client
of the owner would).

The server's teams are a, b and c, run by the scripted test agent (a message "x" is answered
"echo: x"); the client acts as team a. `settings.max_message_bytes` is 4096. Every check that
fails raises; the last line on stdout is a JSON summary.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

TOKEN = os.environ.get("SWITCHBOARD_TOKEN")


@contextlib.asynccontextmanager
async def connect(url, headers=None, **kw):
    """A Client over streamable HTTP at url, with the server's token and extra headers."""
    all_headers = dict(headers or {})
    if TOKEN:
        all_headers["Authorization"] = f"Bearer {TOKEN}"
    async with create_mcp_http_client(headers=all_headers) as http:
        async with Client(streamable_http_client(url, http_client=http), **kw) as c:
            yield c

TOOLS = {
    "team_tell", "team_quick_tell", "team_tell_status", "team_report", "team_teams",
    "team_wake", "team_sleep", "team_reboot", "team_delete", "team_compact",
    "team_is_awake", "team_cancel", "session_stats", "team_approve", "team_approvals",
}
LIMIT = 4096
checks = 0


def check(cond, what, detail=None):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(f"{what}: {detail!r}")


async def ok(client, tool, args=None):
    r = await client.call_tool(tool, args or {}, read_timeout_seconds=60)
    check(not r.is_error, f"{tool}({args}) succeeds", r.content)
    check(isinstance(r.structured_content, dict), f"{tool} returns structured JSON", r)
    return r.structured_content


async def err(client, tool, args, needle):
    r = await client.call_tool(tool, args, read_timeout_seconds=60)
    text = " ".join(getattr(c, "text", "") for c in r.content)
    check(r.is_error, f"{tool}({args}) is a tool error", text)
    check(needle in text, f"{tool}({args}) error mentions {needle!r}", text)
    return text


async def scenario(client):
    info = {"protocol_version": client.protocol_version}
    tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    check(names == TOOLS, "all 15 tools listed", sorted(names ^ TOOLS))
    for t in tools:
        check(t.description and len(t.description) > 20, f"{t.name} has a description", t.description)
        check(t.input_schema.get("type") == "object", f"{t.name} has an object input schema", t.input_schema)
    by_name = {t.name: t for t in tools}
    props = by_name["team_tell"].input_schema["properties"]
    check(set(props) == {"to", "message", "timeout_ms", "idempotency_key"}, "team_tell arguments", props)
    check(props["to"].get("description"), "argument descriptions", props["to"])
    check(by_name["team_tell"].output_schema is not None, "team_tell has an output schema", None)
    info["tools"] = sorted(names)

    teams = await ok(client, "team_teams")
    check(teams["you"] == "a", "caller is team a", teams)
    check([t["name"] for t in teams["teams"]] == ["a", "b", "c"], "every team", teams)

    t = await ok(client, "team_tell", {"to": "b", "message": "hello", "timeout_ms": 60000})
    check(t["state"] == "answered" and t["answer"] == "echo: hello", "team_tell answers", t)
    check(t["from_team"] == "a" and t["to_team"] == "b", "tell from a to b", t)

    q = await ok(client, "team_quick_tell", {"to": "b", "message": "later"})
    check(q["state"] in ("queued", "delivered", "answered") and q["tell_id"], "quick tell id", q)
    status = None
    for _ in range(300):  # bounded poll: 300 x 100 ms
        status = await ok(client, "team_tell_status", {"tell_id": q["tell_id"]})
        if status["state"] == "answered":
            break
        await asyncio.sleep(0.1)
    check(status["state"] == "answered" and status["answer"] == "echo: later", "quick tell answered", status)
    at_once = await ok(client, "team_tell", {"to": "c", "message": "async", "timeout_ms": -1})
    check(at_once["tell_id"] and "note" in at_once or at_once["state"] == "answered", "timeout -1 returns at once", at_once)

    report = await ok(client, "team_report", {"to": "b", "limit": 5})
    check([x["message"] for x in report["tells"]] == ["hello", "later"], "report lists both tells", report)

    awake = await ok(client, "team_is_awake", {"to": "b"})
    check(awake["awake"] and awake["session_id"] and awake["pid"], "b's agent is awake", awake)
    teams = await ok(client, "team_teams")
    b = next(x for x in teams["teams"] if x["name"] == "b")
    check(b["awake"] and b["session_id"] == awake["session_id"], "team_teams shows b awake", b)

    wake = await ok(client, "team_wake", {"to": "c"})
    check(wake["pid"] > 0, "team_wake starts c", wake)
    sleep = await ok(client, "team_sleep", {"to": "c"})
    check(sleep["was_running"], "team_sleep stops c", sleep)
    c = await ok(client, "team_is_awake", {"to": "c"})
    check(not c["awake"], "c sleeps", c)

    compact = await ok(client, "team_compact", {"to": "b", "timeout_ms": 60000})
    check(compact["kind"] == "compact" and compact["state"] == "answered", "team_compact", compact)

    cancel = await ok(client, "team_cancel", {"to": "b"})
    check(cancel["cancelled_queued"] == [] and cancel["interrupted"] is None, "nothing to cancel", cancel)
    cancel = await ok(client, "team_cancel", {"to": "b", "tell_id": t["tell_id"]})
    check(cancel["cancelled_queued"] == [], "an answered tell is not cancelled", cancel)

    reboot = await ok(client, "team_reboot", {"to": "b"})
    check(reboot["old_session_id"] == awake["session_id"] != reboot["session_id"], "new session", reboot)
    t2 = await ok(client, "team_tell", {"to": "b", "message": "history"})
    check(t2["answer"] == "history: 0", "rebooted session has no history", t2)

    stats = await ok(client, "session_stats")
    check(stats["total_sessions"] >= 2, "session_stats counts sessions", stats)

    await err(client, "team_delete", {"to": "b", "confirm": False}, "confirm: true")
    deleted = await ok(client, "team_delete", {"to": "b", "confirm": True})
    check(deleted["deleted_session_id"] == reboot["session_id"], "team_delete deletes", deleted)
    gone = await ok(client, "team_report", {"to": "b"})
    check(gone["tells"] == [], "history gone with the session", gone)

    # Bad arguments: each a tool error (isError) with a clear message.
    await err(client, "team_tell", {"to": "nosuch", "message": "hi"}, "unknown team")
    await err(client, "team_tell", {"to": "a", "message": "hi"}, "your own team")
    await err(client, "team_tell", {"to": "b", "message": ""}, "empty")
    await err(client, "team_tell", {"to": "b", "message": "  \n "}, "empty")
    await err(client, "team_tell", {"to": "b", "message": "x" * (LIMIT + 1)}, "over the limit")
    await err(client, "team_quick_tell", {"to": "b", "message": "x" * (LIMIT + 1)}, "over the limit")
    await err(client, "team_tell", {"to": "b", "message": 42}, "invalid arguments")
    await err(client, "team_tell", {"to": "b", "message": "hi", "timeout_ms": "soon"}, "invalid arguments")
    await err(client, "team_tell", {"message": "hi"}, "missing field `to`")
    await err(client, "team_tell", {"to": "b", "message": "hi", "from": "c"}, "unknown field `from`")
    for bad in (0, -2, 3600001):
        await err(client, "team_tell", {"to": "b", "message": "hi", "timeout_ms": bad}, "invalid timeout_ms")
    await err(client, "team_compact", {"to": "b", "timeout_ms": 1.5}, "invalid arguments")
    await err(client, "team_tell_status", {"tell_id": "nope"}, "not found")
    await err(client, "team_tell_status", {"tell_id": ""}, "invalid tell_id")
    await err(client, "team_report", {"to": "b", "limit": 0}, "invalid limit")
    await err(client, "team_report", {"to": "b", "limit": -1}, "invalid arguments")
    await err(client, "team_delete", {"to": "b", "confirm": "yes"}, "invalid arguments")
    await err(client, "team_wake", {"to": "../etc"}, "invalid team name")
    await err(client, "team_cancel", {"to": "b", "tell_id": "nope"}, "not found")
    await err(client, "team_teams", {"extra": 1}, "unknown field")
    try:
        await client.call_tool("team_nope", {})
        check(False, "an unknown tool is a protocol error", None)
    except MCPError as e:
        check("team_nope" in str(e) or "not found" in str(e).lower(), "unknown tool error", str(e))

    # Still serving.
    t = await ok(client, "team_tell", {"to": "c", "message": "still here"})
    check(t["answer"] == "echo: still here", "server still answers after bad arguments", t)
    info["checks"] = checks
    return info


async def callers(url, agent_token=None):
    """Caller identification over HTTP: ?team=, X-Switchboard-Team, none, a bad agent token;
    with agent_token, only that token (it wins over ?team=)."""
    base = url.split("?")[0]
    out = {}
    if agent_token:
        async with connect(base + "?team=c", {"X-Switchboard-Agent": agent_token}, mode="legacy") as c:
            out["agent"] = (await ok(c, "team_teams"))["you"]
        return out
    async with connect(base + "?team=b", mode="legacy") as c:
        out["query"] = (await ok(c, "team_teams"))["you"]
    async with connect(base, {"X-Switchboard-Team": "c"}, mode="legacy") as c:
        out["header"] = (await ok(c, "team_teams"))["you"]
    async with connect(base, mode="legacy") as c:
        out["none"] = await err(c, "team_teams", {}, "unknown caller")
    # A forged agent credential is refused before MCP (401), whatever ?team= says.
    async with httpx2.AsyncClient(headers={"X-Switchboard-Agent": "forged"}) as http:
        r = await http.post(base + "?team=a", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            headers={"Accept": "application/json, text/event-stream"})
        check(r.status_code == 401, f"a forged agent token: {r.status_code} {r.text}")
        out["forged"] = r.status_code
    async with connect(base + "?team=nosuch", mode="legacy") as c:
        out["unknown_team"] = await err(c, "team_teams", {}, "unknown team")
    out["checks"] = checks
    return out


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["scenario", "scenario-tell", "callers"])
    p.add_argument("--agent-token")
    p.add_argument("--mode", default="legacy")
    p.add_argument("--url")
    p.add_argument("--stdio", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.what == "callers":
        print(json.dumps(await callers(a.url, a.agent_token)))
        return
    if a.what == "scenario-tell":
        async with connect(a.url, mode="legacy", read_timeout_seconds=60) as client:
            print(json.dumps(await ok(client, "team_tell", {"to": "b", "message": "hello"})))
        return
    if a.stdio:
        server = StdioServerParameters(command=a.stdio[0], args=a.stdio[1:])
        async with Client(server, mode=a.mode, read_timeout_seconds=60) as client:
            info = await scenario(client)
    else:
        async with connect(a.url, mode=a.mode, read_timeout_seconds=60) as client:
            info = await scenario(client)
    print(json.dumps(info))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        sys.exit(1)
