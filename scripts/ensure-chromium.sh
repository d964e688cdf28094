#!/bin/sh
# The report's browser test drives headless Chromium (Debian's package). Install it when we can
# (root with apt); otherwise the browser test skips locally and fails in CI, where CI=true.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test..."
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
        || echo "could not install chromium; the browser test will be skipped" >&2
else
    echo "chromium not found and not root: the browser test will be skipped" >&2
fi
exit 0
