#!/usr/bin/env python3
"""Import circles between the top-level modules of each crate (issue 23: "no import circle").

A module is a file `src/x.rs` or a folder `src/x/` (its submodules count as `x`). Module `a`
uses module `b` when code in `a` (comments and doc comments stripped) names `crate::b` or names
an item that the crate root re-exports from `b` (`pub use b::{Item}` in lib.rs / main.rs, used as
`crate::Item`); unit-test modules (`#[cfg(test)] mod …`) do not count. A `use super::…` inside a module's own submodules stays inside it. A cycle
between two or more modules of one crate is reported and the exit code is 1.

Usage: python3 .ci/module_cycles.py [WORKSPACE_ROOT]
"""

import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"\bcrate::(\w+)")
# `crate::{a::X, b}` groups at the top of a path.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")
REEXPORT = re.compile(r"^\s*pub\s+use\s+(\w+)::(\{[^;]*\}|\w+)\s*;", re.M | re.S)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def module_of(src: Path, file: Path):
    rel = file.relative_to(src)
    if len(rel.parts) == 1:
        name = rel.stem
        return None if name in ("lib", "main") else name
    return rel.parts[0]


def crate_cycles(src: Path):
    roots = [src / "lib.rs", src / "main.rs"]
    reexports = {}
    for root in roots:
        if not root.exists():
            continue
        for m, items in REEXPORT.findall(strip_comments(root.read_text())):
            for item in re.findall(r"\w+", items):
                reexports[item] = m
    modules = {module_of(src, f) for f in src.rglob("*.rs")} - {None}
    uses = {m: set() for m in modules}
    for f in src.rglob("*.rs"):
        m = module_of(src, f)
        if m is None or m not in uses:
            continue
        text = strip_comments(f.read_text())
        # Unit tests (`#[cfg(test)] mod tests`, at the end of a file by convention) may use any
        # module: they are not part of the crate's import graph.
        text = re.split(r"#\[cfg\(test\)\]\s*mod\s", text)[0]
        names = CRATE_PATH.findall(text)
        for group in CRATE_GROUP.findall(text):
            names += [part.split("::")[0].strip() for part in group.split(",") if part.strip()]
        for n in names:
            target = n if n in modules else reexports.get(n)
            if target and target != m:
                uses[m].add(target)
    # Strongly connected components (Tarjan) with more than one module.
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(uses[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(uses):
        if v not in index:
            visit(v)
    return out, uses


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    bad = 0
    crates = 0
    for manifest in sorted(root.glob("*/Cargo.toml")):
        src = manifest.parent / "src"
        if not src.is_dir():
            continue
        crates += 1
        cycles, uses = crate_cycles(src)
        for comp in cycles:
            bad += 1
            edges = ", ".join(f"{a} → {b}" for a in comp for b in sorted(uses[a]) if b in comp)
            print(f"{manifest.parent.name}: import circle between {', '.join(comp)} ({edges})")
    print(f"{crates} crates checked, {bad} import circle(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
