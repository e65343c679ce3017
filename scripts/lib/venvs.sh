# shellcheck shell=bash
# Virtualenvs per (Python, Django) matrix entry, shared by scripts/test and scripts/torture.
# Source it after common.sh; the caller sets VENV_ROOT and DEFAULT_MATRIX and runs from the
# repository root (install_stamp reads pyproject.toml).
#
#   resolve_matrix     fills ENTRIES, PYTHON_FOR, DJANGO_FOR and SKIPPED from
#                      ORMCACHE_MATRIX (default: DEFAULT_MATRIX)
#   ensure_venv NAME   creates or refreshes .venvs/NAME (pip only when pyproject.toml changed)

# --- matrix and interpreters ----------------------------------------------------------

# "py311-dj52" -> "3.11 5.2"
parse_entry() {
    local name=$1
    [[ $name =~ ^py([0-9])([0-9]+)-dj([0-9])([0-9]+)$ ]] ||
        die "bad matrix entry '$name': expected pyXYZ-djAB, e.g. py311-dj52"
    echo "${BASH_REMATCH[1]}.${BASH_REMATCH[2]} ${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
}

# True if $1 is a working Python of version $2 that can build a venv. pyenv shims exist
# for every installed version but only run the selected ones, and Debian's python3.X
# lacks ensurepip without python3.X-venv, so merely being on PATH proves nothing.
python_is_usable() {
    local python=$1 version=$2
    "$python" -c "
import sys, venv, ensurepip
sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$version' else 1)
" >/dev/null 2>&1
}

# Print the path of a usable pythonX.Y: PATH first, then pyenv's installs (newest first).
find_python() {
    local version=$1 candidate root
    local -a candidates=()
    if candidate=$(command -v "python$version"); then
        candidates+=("$candidate")
    fi
    local -a roots=("${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv)
    if command -v pyenv >/dev/null; then
        roots=("$(pyenv root 2>/dev/null || true)" "${roots[@]}")
    fi
    for root in "${roots[@]}"; do
        [[ -n $root && -d $root/versions ]] || continue
        while IFS= read -r candidate; do
            candidates+=("$candidate")
        done < <(compgen -G "$root/versions/$version*/bin/python$version" | sort -rV)
    done
    for candidate in "${candidates[@]}"; do
        if python_is_usable "$candidate" "$version"; then
            # The real interpreter, not a pyenv shim whose meaning depends on the shell.
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

# Fills ENTRIES (runnable names), PYTHON_FOR[name], DJANGO_FOR[name] and SKIPPED.
declare -a ENTRIES=() SKIPPED=()
declare -A PYTHON_FOR=() DJANGO_FOR=()
resolve_matrix() {
    local name parsed py_version dj_version python
    for name in ${ORMCACHE_MATRIX:-$DEFAULT_MATRIX}; do
        parsed=$(parse_entry "$name")
        py_version=${parsed% *}
        dj_version=${parsed#* }
        if ! python=$(find_python "$py_version"); then
            local msg="no usable python$py_version (with venv/ensurepip) for $name"
            is_ci && die "$msg"
            warn "$msg; skipping it. Install it (e.g. 'pyenv install $py_version')" \
                "or narrow ORMCACHE_MATRIX."
            SKIPPED+=("$name")
            continue
        fi
        ENTRIES+=("$name")
        PYTHON_FOR[$name]=$python
        DJANGO_FOR[$name]=$dj_version
    done
    ((${#ENTRIES[@]} > 0)) || die "no runnable matrix entry (ORMCACHE_MATRIX='${ORMCACHE_MATRIX:-$DEFAULT_MATRIX}')"
}

# --- virtualenvs ----------------------------------------------------------------------

# What the installed packages depend on: the project metadata and the Django series.
install_stamp() {
    local python=$1 django=$2
    "$python" -c "
import hashlib, sys
digest = hashlib.sha256(open('pyproject.toml', 'rb').read())
digest.update(sys.argv[1].encode())
print(digest.hexdigest())
" "Django==$django.*"
}

ensure_venv() {
    local name=$1 python=${PYTHON_FOR[$1]} django=${DJANGO_FOR[$1]}
    local venv="$VENV_ROOT/$name"
    local stamp_file="$venv/.ormcache-install-stamp"
    local py_version
    py_version=$(parse_entry "$name")
    py_version=${py_version% *}

    # A venv whose interpreter vanished (pyenv version removed) or has the wrong version
    # cannot be repaired by pip; start again.
    if ! python_is_usable "$venv/bin/python" "$py_version"; then
        log "$name: creating virtualenv with $python"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi

    local stamp
    stamp=$(install_stamp "$python" "$django")
    if [[ ${ORMCACHE_REINSTALL:-} != 1 && -f $stamp_file && $(<"$stamp_file") == "$stamp" ]]; then
        return 0
    fi
    log "$name: installing ormcache[test] with Django $django.*"
    rm -f "$stamp_file" # a failed install must not look finished next time
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e '.[test]' "Django==$django.*" ||
        die "$name: pip install failed (see above)"
    echo "$stamp" >"$stamp_file"
}

