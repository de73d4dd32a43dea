# shellcheck shell=bash
# Finds the libclang shared library that the rocksdb crate's bindgen (clang-sys, "runtime"
# feature) will load, the way clang-sys looks for it:
#   - when LIBCLANG_PATH is set, there and nowhere else (a directory, or the file itself);
#   - otherwise in `llvm-config --prefix`/lib*, LD_LIBRARY_PATH, LIBRARY_PATH and the system
#     directories /usr/local/llvm*/lib*, /usr/local/lib*[/*[/*]], /usr/lib*[/*[/*]].
# The names it loads are libclang.so, libclang-<n>.so, libclang.so.<n> and libclang-<n>.so.<n>.
# libclang-cpp.so.<n> (Debian's libclang-cpp14, pulled in by other packages) is a different
# library and does not count: a machine with only that one cannot build tally.
#
# Sourced by install-deps.sh; run on its own it prints the library it finds (exit 0) or nothing
# (exit 1). TALLY_SYSROOT prefixes the system directories, so the tests can point it at a fake
# directory tree.

tally_is_libclang_name() {
    case "$1" in
        libclang.so | libclang.so.[0-9]*) return 0 ;;
        libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*) return 0 ;;
        *) return 1 ;;
    esac
}

# Prints the first libclang in directory $1.
tally_libclang_in_dir() {
    local dir="$1" file
    [ -d "$dir" ] || return 1
    for file in "$dir"/libclang*.so*; do
        [ -e "$file" ] || continue
        if tally_is_libclang_name "$(basename "$file")"; then
            printf '%s\n' "$file"
            return 0
        fi
    done
    return 1
}

tally_find_libclang() {
    local root="${TALLY_SYSROOT:-}" dir pattern prefix
    if [ -n "${LIBCLANG_PATH:-}" ]; then
        if [ -f "$LIBCLANG_PATH" ] && tally_is_libclang_name "$(basename "$LIBCLANG_PATH")"; then
            printf '%s\n' "$LIBCLANG_PATH"
            return 0
        fi
        tally_libclang_in_dir "$LIBCLANG_PATH"
        return
    fi
    if [ -z "$root" ] && command -v llvm-config >/dev/null 2>&1; then
        prefix="$(llvm-config --prefix 2>/dev/null || true)"
        if [ -n "$prefix" ]; then
            for dir in "$prefix/lib" "$prefix/lib64"; do
                tally_libclang_in_dir "$dir" && return 0
            done
        fi
    fi
    local IFS_saved="$IFS"
    IFS=:
    for dir in ${LD_LIBRARY_PATH:-} ${LIBRARY_PATH:-}; do
        IFS="$IFS_saved"
        [ -n "$dir" ] && tally_libclang_in_dir "$dir" && return 0
    done
    IFS="$IFS_saved"
    for pattern in "/usr/local/llvm*/lib*" "/usr/local/lib*/*/*" "/usr/local/lib*/*" "/usr/local/lib*" \
        "/usr/lib*/*/*" "/usr/lib*/*" "/usr/lib*"; do
        for dir in $root$pattern; do
            [ -d "$dir" ] || continue
            tally_libclang_in_dir "$dir" && return 0
        done
    done
    return 1
}

# Run as a command (not sourced): print what is found.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    tally_find_libclang
fi
