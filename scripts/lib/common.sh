# shellcheck shell=bash
# Shared by the scripts in scripts/: messages and small checks. Source it; do not run it.

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

is_ci() {
    case "${CI:-}" in
    true | TRUE | True | 1 | yes) return 0 ;;
    *) return 1 ;;
    esac
}

# Print the last lines of a server log, so a failed start explains itself before the
# temp dir (and the log with it) is deleted.
show_log() {
    local file=$1
    if [[ -f $file ]]; then
        printf -- '--- last lines of %s ---\n' "$(basename "$file")" >&2
        tail -n 30 "$file" >&2
    fi
}
