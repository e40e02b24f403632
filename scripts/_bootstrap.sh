# shellcheck shell=bash
# Shared install logic for scripts/run and scripts/test (sourced, not executed).
# Installs only what is missing: Debian packages, then the project into .venv (editable).
# A stamp in .venv records pyproject.toml's hash and the checkout path, so a second run
# reinstalls nothing unless the dependencies (or the checkout) changed.

KYSO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KYSO_VENV="$KYSO_ROOT/.venv"
KYSO_STAMP="$KYSO_VENV/.kyso-install-stamp"

kyso_log() {
    printf '==> %s\n' "$*" >&2
}

kyso_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run as root directly, else through sudo (non-interactive: fail rather than hang on a prompt
# when there is no terminal).
kyso_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        kyso_die "need root to run: $* (install sudo or run as root)"
    fi
}

KYSO_APT_UPDATED=0

kyso_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        kyso_die "missing packages ($*) and no apt-get here: install them by hand"
    if [ "$KYSO_APT_UPDATED" -eq 0 ]; then
        kyso_log "apt-get update"
        kyso_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        KYSO_APT_UPDATED=1
    fi
    kyso_log "apt-get install $*"
    kyso_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# kyso_need_commands COMMAND:PACKAGE ... — install the packages whose command is missing.
kyso_need_commands() {
    local pair cmd pkg missing=()
    for pair in "$@"; do
        cmd="${pair%%:*}"
        pkg="${pair#*:}"
        if ! command -v "$cmd" >/dev/null 2>&1; then
            case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        kyso_apt_install "${missing[@]}"
    fi
}

# The HSM tools every command needs: SoftHSM2 (the token) and OpenSC's pkcs11-tool.
kyso_system_packages() {
    kyso_need_commands softhsm2-util:softhsm2 pkcs11-tool:opensc "$@"
}

kyso_python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

# Create .venv if missing (or broken) and install the project with its dev extras when the
# venv lacks it or pyproject.toml changed since the last install.
kyso_venv() {
    if [ ! -x "$KYSO_VENV/bin/python" ] || ! kyso_python_ok "$KYSO_VENV/bin/python"; then
        command -v python3 >/dev/null 2>&1 || kyso_apt_install python3 python3-venv
        kyso_python_ok python3 || kyso_die "kyso needs Python 3.11 or newer (python3 is older)"
        kyso_log "creating virtual environment .venv"
        rm -rf "$KYSO_VENV"
        if ! python3 -m venv "$KYSO_VENV" >/dev/null 2>&1; then
            # Debian splits ensurepip into python3-venv.
            rm -rf "$KYSO_VENV"
            kyso_apt_install python3-venv
            python3 -m venv "$KYSO_VENV"
        fi
    fi
    local want have=""
    want="$(sha256sum "$KYSO_ROOT/pyproject.toml" | cut -d' ' -f1) $KYSO_ROOT"
    [ -f "$KYSO_STAMP" ] && have="$(cat "$KYSO_STAMP")"
    # -I: isolated, so a kyso.egg-info in the working directory cannot fake an install.
    if [ "$want" != "$have" ] || [ ! -x "$KYSO_VENV/bin/kyso" ] ||
        ! "$KYSO_VENV/bin/python" -I -c 'import importlib.metadata as m; m.version("kyso")' \
            >/dev/null 2>&1; then
        kyso_log "installing kyso and its dependencies into .venv"
        (cd "$KYSO_ROOT" && "$KYSO_VENV/bin/python" -m pip install --disable-pip-version-check \
            -q -e '.[dev]')
        printf '%s\n' "$want" >"$KYSO_STAMP"
    fi
    export PATH="$KYSO_VENV/bin:$PATH"
}
