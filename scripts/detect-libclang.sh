# shellcheck shell=bash
# Finds a libclang shared library that the rocksdb crate's bindgen (clang-sys 1.9, "runtime"
# feature) will load, looking where clang-sys looks:
#   - when LIBCLANG_PATH is set (even to nothing), there and nowhere else (a directory, or the
#     file itself);
#   - otherwise in `llvm-config --prefix`/{bin,lib,lib64} (LLVM_CONFIG_PATH names the
#     llvm-config to run), the directories of LD_LIBRARY_PATH and LIBRARY_PATH, and the system
#     directories /usr/local/llvm*/lib*, /usr/local/lib*[/*[/*]], /usr/lib*[/*[/*]].
# The names it loads are libclang.so, libclang-*.so, libclang.so.* and libclang-*.so.*, except
# libclang-cpp (Debian's libclang-cpp14, pulled in by other packages): a different library, and
# a machine with only that one cannot build tally. Like clang-sys, a file counts only if it is
# an ELF shared object of this machine's word size (a 32-bit libclang does not do).
# clang-sys takes the highest version among all it finds; this stops at the first, so the path
# printed may differ from the one bindgen picks, but "found" and "not found" agree.
#
# Sourced by install-deps.sh; run on its own it prints the library it finds (exit 0) or nothing
# (exit 1). TALLY_SYSROOT prefixes the system directories and turns off the llvm-config
# lookup, so that the tests can point it at a fake directory tree.

tally_is_libclang_name() {
    case "$1" in
        *-cpp.*) return 1 ;;
        libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*) return 0 ;;
        *) return 1 ;;
    esac
}

# Succeeds when $1 is an ELF file of this machine's class (1: 32-bit, 2: 64-bit), the check
# clang-sys makes before it accepts a library.
tally_is_native_elf() {
    local want
    case "$(getconf LONG_BIT 2>/dev/null)" in
        32) want="7f454c4601" ;;
        *) want="7f454c4602" ;;
    esac
    [ "$(od -An -N5 -tx1 "$1" 2>/dev/null | tr -d ' \n')" = "$want" ]
}

# Prints the first libclang in directory $1.
tally_libclang_in_dir() {
    local dir="$1" file
    [ -d "$dir" ] || return 1
    for file in "$dir"/libclang*.so*; do
        [ -e "$file" ] || continue
        if tally_is_libclang_name "$(basename "$file")" && tally_is_native_elf "$file"; then
            printf '%s\n' "$file"
            return 0
        fi
    done
    return 1
}

tally_find_libclang() {
    local root="${TALLY_SYSROOT:-}" dir pattern prefix llvm_config
    # clang-sys treats a set but empty LIBCLANG_PATH as set: it then finds nothing.
    if [ -n "${LIBCLANG_PATH+set}" ]; then
        if [ -f "$LIBCLANG_PATH" ] && tally_is_libclang_name "$(basename "$LIBCLANG_PATH")" \
            && tally_is_native_elf "$LIBCLANG_PATH"; then
            printf '%s\n' "$LIBCLANG_PATH"
            return 0
        fi
        tally_libclang_in_dir "$LIBCLANG_PATH"
        return
    fi
    llvm_config="${LLVM_CONFIG_PATH:-llvm-config}"
    if [ -z "$root" ] && command -v "$llvm_config" >/dev/null 2>&1; then
        prefix="$("$llvm_config" --prefix 2>/dev/null | head -n1 || true)"
        if [ -n "$prefix" ]; then
            for dir in "$prefix/bin" "$prefix/lib" "$prefix/lib64"; do
                tally_libclang_in_dir "$dir" && return 0
            done
        fi
    fi
    # Split on ':' without letting the shell expand globs in the entries.
    local -a dirs=()
    IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}:${LIBRARY_PATH:-}"
    for dir in "${dirs[@]}"; do
        [ -n "$dir" ] && tally_libclang_in_dir "$dir" && return 0
    done
    for pattern in "/usr/local/llvm*/lib*" "/usr/local/lib*/*/*" "/usr/local/lib*/*" "/usr/local/lib*" \
        "/usr/lib*/*/*" "/usr/lib*/*" "/usr/lib*"; do
        # The root is quoted (taken literally), the pattern is not (expanded as a glob).
        # shellcheck disable=SC2086
        for dir in "$root"$pattern; do
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
