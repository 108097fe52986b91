#!/usr/bin/env bash
# System programs some tests need, installed with apt-get by `make test` / `make test-all` (never from pytest):
#   espeak-ng  the spoken-question data (tests/test_scenes.py, tests/test_examples_generation.py)
#   chromium   the report opened in a headless browser (tests/test_report_browser.py, scripts/report_screenshot.py)
# Idempotent: nothing is done when the programs are there. It installs only as root on a machine with apt-get;
# anywhere else, or when the install fails (no network, no such package), it says why and exits 0: the set-up
# goes on and the tests that need a missing program are skipped with a reason naming it and this script.
set -u

APT_TIMEOUT_S=600  # per apt-get call: a stuck mirror must not hang `make test`

have() { command -v "$1" >/dev/null 2>&1; }

have_chromium() {  # the names tests/chromium.py looks for
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable chrome headless_shell; do
        have "$name" && return 0
    done
    return 1
}

say() { echo "install_system_deps: $*" >&2; }

missing=()
have espeak-ng || missing+=(espeak-ng)
have_chromium || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! have apt-get; then
    say "not installing ${missing[*]}: no apt-get on this machine (not Debian/Ubuntu); tests that need them will skip"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "not installing ${missing[*]}: needs root (run: sudo $0); tests that need them will skip"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt() { timeout "$APT_TIMEOUT_S" apt-get -qq -o=Dpkg::Use-Pty=0 "$@" >/dev/null 2>&1; }

say "installing ${missing[*]} with apt-get (a minute or two)"
# The package index is refreshed only now that an install is needed; a failed refresh may still leave a usable one.
apt update || say "apt-get update failed (no network?); trying the package index already here"
for pkg in "${missing[@]}"; do  # one at a time: a package this distribution lacks must not block the others
    if apt install -y --no-install-recommends "$pkg"; then
        say "installed $pkg"
    else
        say "could not install $pkg with apt-get (no network or no such package); tests that need it will skip"
    fi
done
exit 0
