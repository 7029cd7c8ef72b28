# shellcheck shell=bash
# Sourced by runme.sh: sets CHROMIUM to a headless Chromium. Debian's package is installed when missing and this runs
# as root; when it cannot be had the test fails here, loudly, rather than skipping the page check.
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    # Another apt run on the machine holds the lock for a while: wait for it rather than fail.
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium >&2
    CHROMIUM=$(command -v chromium || true)
fi
if [ -z "$CHROMIUM" ]; then
    echo "The audit page must be opened in headless Chromium, and none is installed: install Debian's package" \
         "'chromium' (apt-get install chromium), or run the test as root so that it installs it." >&2
    exit 1
fi
export CHROMIUM
