#!/usr/bin/env bash
# Builds a Python or JavaScript operator into a weir:operator component of
# the world `buffering-operator` (the SDKs export `snapshots` too).
#
#   scripts/build-operator.sh path/to/operator.py -o out.wasm   (componentize-py)
#   scripts/build-operator.sh path/to/operator.js -o out.wasm   (componentize-js)
#
# A .py file imports `weir` (guest-sdk/python) and sets
# `Hooks = weir.export(MyOperator)`; other modules in its directory are
# importable (componentize-py's app module is a generated one, `weir_entry`,
# that imports the file by name and exports that `Hooks` and its
# `Hooks.Snapshots`: the name may be any module name without a dot, and no
# module of the directory may be named `weir_entry` or `weir`). A .js file
# imports from "weir" (guest-sdk/js) and exports
# `hooks = exportOperator(MyOperator)`.
# Rebuilding is skipped when the sources, the SDK, the WIT, this script and
# the toolchain are unchanged (a stamp file beside the output records their
# digest); --force rebuilds anyway.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
    echo "usage: $0 OPERATOR.py|OPERATOR.js -o OUT.wasm [--force]" >&2
    exit 2
}
src="" out="" force=0
while (($#)); do
    case "$1" in
        -o) out="${2:-}"; shift 2 || usage ;;
        --force) force=1; shift ;;
        -h|--help) usage ;;
        *) [ -z "$src" ] || usage; src="$1"; shift ;;
    esac
done
[ -n "$src" ] && [ -n "$out" ] || usage
[ -f "$src" ] || { echo "error: no such operator source: $src" >&2; exit 2; }
src_dir="$(cd "$(dirname "$src")" && pwd)"
file="$(basename "$src")"

missing() {
    echo "error: $1 is not installed, so $src cannot be built." >&2
    echo "Install it with:  bash scripts/setup.sh" >&2
    echo "(or by hand: $2)" >&2
    exit 3
}

case "$file" in
    *.py)
        # The build generates the app module, `weir_entry`, which imports the
        # operator's module by name with importlib: a file name that is not a
        # Python identifier (my-op.py, 2x.py) is importable that way too, but
        # a dot would name a package, and quotes, backslashes and control
        # characters do not go into the generated string literal.
        module="${file%.py}"
        [ -n "$module" ] || {
            echo "error: $src: the file name without .py is imported as a Python module, so it cannot be empty; rename the file" >&2
            exit 2
        }
        case "$module" in
            *[.\'\"\\]*|*[[:cntrl:]]*)
                echo "error: $src: the file name without .py is imported as a Python module, so it cannot contain a dot, a quote, a backslash or a control character; rename the file" >&2
                exit 2 ;;
        esac
        # The generated module comes first on the module path and the SDK
        # last, so a module of that name in the operator's directory would be
        # hidden by the one, or hide the other.
        entry=weir_entry
        for clash in "$entry.py" "$entry" weir.py weir; do
            [ -e "$src_dir/$clash" ] || continue
            case "$clash" in
                weir.py|weir) why="a module named weir in the operator's directory would hide the weir SDK" ;;
                *) why="the build generates the app module $entry, which would hide this one" ;;
            esac
            echo "error: $src_dir/$clash: $why; rename it" >&2
            exit 2
        done
        tool="${WEIR_COMPONENTIZE_PY:-}"
        [ -n "$tool" ] || { [ -x "$repo/.toolchains/python/bin/componentize-py" ] && tool="$repo/.toolchains/python/bin/componentize-py"; }
        [ -n "$tool" ] || tool="$(command -v componentize-py || true)"
        [ -n "$tool" ] || missing "componentize-py" "pip install componentize-py==0.25.1"
        version="$("$tool" --version)"
        sdk="$repo/guest-sdk/python"
        inputs=(. -maxdepth 1 -name '*.py')
        sdk_inputs=(weir -name '*.py')
        ;;
    *.js|*.mjs)
        command -v node >/dev/null || missing "node" "apt-get install nodejs npm"
        [ -f "$repo/guest-sdk/js/node_modules/@bytecodealliance/componentize-js/package.json" ] ||
            missing "@bytecodealliance/componentize-js" "cd guest-sdk/js && npm install --no-save"
        version="componentize-js $(node -p "require('$repo/guest-sdk/js/node_modules/@bytecodealliance/componentize-js/package.json').version")"
        sdk="$repo/guest-sdk/js"
        inputs=(. -maxdepth 1 \( -name '*.js' -o -name '*.mjs' \))
        sdk_inputs=(. -maxdepth 1 \( -name weir.js -o -name codec.js -o -name wire.js -o -name host.js
            -o -name window.js -o -name cache.js -o -name build.mjs \))
        ;;
    *) echo "error: $src: expected a .py or .js operator (Rust operators build with cargo)" >&2; exit 2 ;;
esac

# Skip the build (tens of seconds) when nothing that goes into it changed.
# The contents of the files `find` selects in a directory (arguments: the
# directory, then find's), in name order; names may hold any character.
cat_found() {
    local dir="$1"
    shift
    (cd "$dir" && find "$@" -print0 | sort -z | xargs -0 -r cat --)
}
stamp="$out.inputs"
digest=$( {
    echo "$version $file"
    cat_found "$src_dir" "${inputs[@]}"
    cat_found "$sdk" "${sdk_inputs[@]}"
    cat "$repo"/wit/*.wit "$repo/scripts/build-operator.sh"
} | sha256sum | cut -d' ' -f1)
if ((!force)) && [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    echo "up to date: $out" >&2
    exit 0
fi

mkdir -p "$(dirname "$out")"
rm -f "$stamp"
started=$(date +%s)
case "$file" in
    *.py)
        # componentize-py writes build files beside the module; keep them out of the tree.
        export PYTHONDONTWRITEBYTECODE=1
        entry_dir="$(mktemp -d)"
        trap 'rm -rf "$entry_dir"' EXIT
        # The app module: componentize-py looks up a class per exported
        # interface in it, `Hooks` and `Snapshots`.
        printf 'import importlib\n\nHooks = importlib.import_module(%s).Hooks\nSnapshots = Hooks.Snapshots\n' \
            "'$module'" > "$entry_dir/$entry.py"
        "$tool" -d "$repo/wit" -w buffering-operator componentize \
            -p "$entry_dir" -p "$src_dir" -p "$sdk" "$entry" -o "$out.tmp" >/dev/null
        mv "$out.tmp" "$out"
        echo "built $out ($(( $(stat -c %s "$out") / 1000000 )) MB) from $src in $(( $(date +%s) - started )) s" >&2
        ;;
    *)
        # build.mjs writes the output only once the component is complete.
        node "$sdk/build.mjs" "$src" -o "$out" --wit "$repo/wit"
        ;;
esac
echo "$digest" > "$stamp"
