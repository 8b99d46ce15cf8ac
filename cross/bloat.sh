#!/usr/bin/env bash
# cross/bloat.sh - what each crate and each gatecert module costs in a cross-built binary.
#
#   cross/bloat.sh [TARGET] [TOP]        # default mipsel-unknown-linux-musl, top 30 functions
#   BIN=path/to/unstripped cross/bloat.sh TARGET
#
# `cargo bloat` does not work with cross/build.sh's -Zbuild-std setup, so this reads the
# symbols of the *unstripped* binary cross/build.sh leaves in target/cross/cargo/TARGET/release/
# (the release profile with strip=false; debug=false, same opt-level z, LTO, codegen-units 1
# and panic=abort as the shipped binary, which is the same code with the symbols stripped).
#
# Method: `TARGET-nm -S -C` (binutils demangles Rust's symbols and drops the hash); every
# symbol with a size in .text, .rodata, .data or .bss is given to one owner:
#   - a Rust path: the crate of the path (for `<T as Trait>::f`, the crate of T);
#     a generic of core/alloc/std (drop_in_place<T>, Vec<T>::push, ...) goes to the first
#     other crate named in its type arguments, since that crate's types caused the copy;
#   - a C symbol: "ring (C/asm)" if ring's own static library defines it, "musl libc" if musl's
#     libc.a does, "libgcc" if libgcc.a/libgcc_eh.a does, else "C (other)".
# gatecert's share is then split by its top-level module (gatecert::est::sets -> est).
# Bytes that no sized symbol covers (string literals, anonymous constants, padding, the
# unwind tables that cross/build.sh strips) are shown per section as "unattributed".
# Sizes are of the symbols in the binary, which, with LTO, already has inlined code in its
# caller: a module's figure is what was left in its own functions.
set -euo pipefail
# shellcheck source=cross/env.sh
. "$(dirname "$0")/env.sh"

T=${1:-mipsel-unknown-linux-musl}
TOP=${2:-30}
read -r PFX _ MCC _ <<<"$(tinfo "$T")"
B=${BIN:-$CARGO_TARGET_DIR/$T/release/gatecert}
[ -f "$B" ] || { echo "bloat: no unstripped binary at $B (run cross/build.sh $T)" >&2; exit 1; }
if ! "$PFX-nm" "$B" 2>/dev/null | grep " main$" >/dev/null; then   # no -q: SIGPIPE under pipefail
  echo "bloat: $B has no symbols (it is stripped); cross/build.sh keeps them in its cargo output" >&2
  exit 1
fi
NM=$PFX-nm
command -v "$NM" >/dev/null || NM="nm"

# The C libraries' own symbol lists, so C code is attributed by who defines it.
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
defined() { "$NM" --defined-only "$@" 2>/dev/null | awk 'NF>=3 {print $3}' | sort -u; }
ring_a=$(find "$(dirname "$B")/build" -name 'libring_core_*.a' ! -name '*_test.a' -printf '%T@ %p\n' 2>/dev/null \
  | sort -rn | awk 'NR==1 {print $2}')
[ -n "$ring_a" ] && defined "$ring_a" >"$W/ring"
: >>"$W/ring"
# musl: the one cross/build.sh built (32-bit MIPS), else the wrapper's own.
a=${PFX%%-*}
libc_a=$CROSS_ROOT/musl/$a/lib/libc.a
[ -f "$libc_a" ] || libc_a=$("$MCC" -print-file-name=libc.a 2>/dev/null || true)
[ -f "$libc_a" ] && defined "$libc_a" >"$W/musl"
: >>"$W/musl"
# libgcc, and libgcc_eh as cross/build.sh links it (libunwind.a = libgcc_eh.a + the shim).
for f in "$("$PFX-gcc" -print-file-name=libgcc.a 2>/dev/null || true)" "$CROSS_ROOT/unwind/$T/libunwind.a"; do
  [ -f "$f" ] && defined "$f" >>"$W/libgcc"
done
: >>"$W/libgcc"
"$NM" -S -C --size-sort "$B" >"$W/syms"
"$PFX-size" -A "$B" >"$W/sections" 2>/dev/null || size -A "$B" >"$W/sections"

python3 - "$W" "$TOP" "$B" "$T" "${B#"$REPO"/}" <<'PY'
import os, re, sys
from collections import defaultdict
w, top, binary, target, shown = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def names(f):
    with open(os.path.join(w, f)) as fh:
        return set(l.strip() for l in fh if l.strip())
ring, musl, libgcc = names("ring"), names("musl"), names("libgcc")

sections = {}
for line in open(os.path.join(w, "sections")):
    p = line.split()
    if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit():
        sections[p[0]] = int(p[1])

STD = {"core", "alloc", "std", "std_detect", "panic_abort", "compiler_builtins", "hashbrown",
       "rustc_demangle", "addr2line", "gimli", "miniz_oxide", "object", "memchr_std"}
# a path's first segment: not preceded by an identifier character or another "::"
path_re = re.compile(r"(?<![A-Za-z0-9_:])([A-Za-z_][A-Za-z0-9_]*)::")

def first_crate(s):
    # the first crate-looking path segment in s
    for m in path_re.finditer(s):
        seg = m.group(1)
        if seg in ("impl", "dyn", "for", "mut", "const", "as", "_"):
            continue
        return seg
    return None

def owner(name):
    if "::" not in name:
        if name in ring or name.startswith("ring_core_"):
            return "ring (C/asm)"
        if name in musl:
            return "musl libc"
        if name in libgcc:
            return "libgcc"
        if os.environ.get("BLOAT_DEBUG"):
            print("C (other):", name, file=sys.stderr)
        return "C (other)"
    s = name
    # <T as Trait>::f and <impl ...> : the crate of the self type
    while s.startswith("<"):
        s = s[1:]
    s = s.replace("impl ", "", 1) if s.startswith("impl ") else s
    s = s.lstrip("&*").replace("mut ", "", 1) if s[:1] in "&*" else s
    c = first_crate(s)
    if c is None or c in STD:
        # a std generic or a method of a primitive (<[T]>::sort, <str>::parse::<T>):
        # whoever's type it was instantiated for, else the standard library's own
        head_end = s.find("<") if c else 0
        args = s[head_end:] if head_end >= 0 else ""
        for m in path_re.finditer(args):
            seg = m.group(1)
            if seg not in STD and seg not in ("impl", "dyn", "for", "mut", "const", "as", "_"):
                return seg
    return c or "core"

KIND = {"t": ".text", "T": ".text", "w": ".text", "W": ".text",
        "r": ".rodata", "R": ".rodata", "v": ".rodata", "V": ".rodata",
        "d": ".data", "D": ".data", "b": ".bss", "B": ".bss", "g": ".data", "G": ".data"}
by_crate = defaultdict(lambda: defaultdict(int))
by_mod = defaultdict(lambda: defaultdict(int))
attributed = defaultdict(int)
funcs = []
seen = set()
for line in open(os.path.join(w, "syms")):
    p = line.rstrip("\n").split(" ", 3)
    if len(p) < 4:
        continue
    size, kind, name = int(p[1], 16), p[2], p[3]
    if p[0] in seen:  # an alias of a symbol already counted (same address)
        continue
    seen.add(p[0])
    sec = KIND.get(kind)
    if sec is None or size == 0:
        continue
    o = owner(name)
    by_crate[o][sec] += size
    attributed[sec] += size
    if o == "gatecert":
        i = name.find("gatecert::")
        m = name[i + len("gatecert::"):].split("::")[0].split("<")[0].split(">")[0]
        # a type or function in the crate root (gatecert::Foo) has no module
        by_mod[m if m and (m[0].islower() or m == "_") else "(crate root)"][sec] += size
    if sec == ".text":
        funcs.append((size, o, name))

def fmt(n):
    return f"{n:,}"

def total(d):
    return sum(d.values())

text = sections.get(".text", 0)
print(f"# {target}: {shown}")
print(f"# file {fmt(os.path.getsize(binary))} B unstripped")
print()
print("## Sections (size -A)")
print()
print("| section | bytes | covered by sized symbols | unattributed |")
print("|---|---:|---:|---:|")
for s in (".text", ".rodata", ".data.rel.ro", ".data", ".eh_frame", ".eh_frame_hdr", ".got", ".bss"):
    if s in sections:
        a = attributed.get(s, 0) if s in (".text", ".rodata", ".data", ".bss") else 0
        print(f"| {s} | {fmt(sections[s])} | {fmt(a)} | {fmt(max(sections[s] - a, 0))} |")
print()
print("## By crate (sized symbols; .text + .rodata + .data)")
print()
print("| crate | .text | .rodata | .data | total | % of .text |")
print("|---|---:|---:|---:|---:|---:|")
rows = sorted(by_crate.items(), key=lambda kv: -(kv[1][".text"] + kv[1][".rodata"] + kv[1][".data"]))
for c, d in rows:
    t = d[".text"] + d[".rodata"] + d[".data"]
    if t == 0:
        continue
    pct = 100.0 * d[".text"] / text if text else 0
    print(f"| {c} | {fmt(d['.text'])} | {fmt(d['.rodata'])} | {fmt(d['.data'])} | {fmt(t)} | {pct:.1f} |")
print()
print("## gatecert by module (its share of the table above)")
print()
print("| module | .text | .rodata + .data | total |")
print("|---|---:|---:|---:|")
for m, d in sorted(by_mod.items(), key=lambda kv: -total(kv[1])):
    print(f"| {m} | {fmt(d['.text'])} | {fmt(d['.rodata'] + d['.data'])} | {fmt(d['.text'] + d['.rodata'] + d['.data'])} |")
print()
print(f"## Top {top} functions (.text)")
print()
print("| bytes | crate | function |")
print("|---:|---|---|")
for size, o, name in sorted(funcs, key=lambda f: -f[0])[:top]:
    n = name if len(name) <= 140 else name[:137] + "..."
    n = n.replace("|", "\\|")
    print(f"| {fmt(size)} | {o} | `{n}` |")
PY
