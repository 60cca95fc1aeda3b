#!/usr/bin/env bash
# Set up (idempotent; requirements-dev.txt) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# Debian's chromium for the dashboard's browser test (Playwright drives it; it never downloads one).
# Only as root with apt-get; elsewhere tests/test_browser.py skips and says why.
if [ ! -x /usr/bin/chromium ] && [ "${RADTRIAGE_NO_CHROMIUM:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (Debian package) for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "setup: chromium could not be installed; the browser test will be skipped" >&2
  else
    echo "setup: /usr/bin/chromium is absent (not root or no apt-get); the browser test will be skipped" >&2
  fi
fi
# Debian's Orthanc PACS and its DICOMweb plugin for tests/test_pacs.py (the tests start their own server
# on a free loopback port). Only as root with apt-get; elsewhere the PACS tests skip and say why.
if [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] && [ "${RADTRIAGE_NO_ORTHANC:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing orthanc and orthanc-dicomweb (Debian packages) for the PACS tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null \
      || echo "setup: orthanc could not be installed; the PACS tests will be skipped" >&2
  else
    echo "setup: Orthanc is absent (not root or no apt-get); the PACS tests will be skipped" >&2
  fi
fi
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
exec .venv/bin/python -m pytest "$@"
