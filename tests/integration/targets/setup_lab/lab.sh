# shellcheck shell=bash
# Sourced by the integration targets' runme.sh: starts a winrm-lab fleet on a loopback range of its own, waits
# until every device listens (the manifest appears only then), and stops it when the target exits.
#   start_lab COUNT SCENARIO [AUTH]  ->  sets LAB_DIR, LAB_INVENTORY, LAB_MANIFEST (AUTH: winrm-lab --auth, ntlm)
#   LAB_LOG_LEVEL=info logs every request a device receives to $LAB_DIR/lab.log (the request log); LAB_SEED picks
#   another fleet (default 7).
start_lab() {
    local count=$1 scenario=$2 auth=${3:-ntlm}
    LAB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/winrm-lab.XXXXXX")
    LAB_INVENTORY="$LAB_DIR/inventory.yml"
    LAB_MANIFEST="$LAB_DIR/manifest.json"
    # A random 127.x.y.0/24 block, so labs of parallel runs and a running demo do not collide.
    local base="127.$((RANDOM % 200 + 30)).$((RANDOM % 250 + 1)).1"
    winrm-lab --devices "$count" --scenario "$scenario" --seed "${LAB_SEED:-7}" --base-address "$base" \
        --auth "$auth" --log-level "${LAB_LOG_LEVEL:-warning}" --work-dir "$LAB_DIR/devices" \
        --inventory "$LAB_INVENTORY" --manifest "$LAB_MANIFEST" >"$LAB_DIR/lab.log" 2>&1 &
    LAB_PID=$!
    trap stop_lab EXIT
    local waited=0
    until [ -s "$LAB_MANIFEST" ]; do
        if ! kill -0 "$LAB_PID" 2>/dev/null; then
            echo "winrm-lab exited before it was ready:" >&2
            cat "$LAB_DIR/lab.log" >&2
            return 1
        fi
        if [ "$waited" -ge 600 ]; then
            echo "winrm-lab did not get ready within 60 s" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    export LAB_DIR LAB_INVENTORY LAB_MANIFEST
}

stop_lab() {
    local status=$?
    if [ -n "${LAB_PID:-}" ] && kill -0 "$LAB_PID" 2>/dev/null; then
        kill -TERM "$LAB_PID"
        wait "$LAB_PID" || true
    fi
    if [ "$status" -ne 0 ] && [ -f "${LAB_DIR:-}/lab.log" ]; then
        echo "--- winrm-lab log ---" >&2
        tail -n 50 "$LAB_DIR/lab.log" >&2
    fi
    rm -rf "${LAB_DIR:-/nonexistent}"
    return "$status"
}
