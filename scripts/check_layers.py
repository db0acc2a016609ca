#!/usr/bin/env python3
"""Layering check: a lower layer never reaches into a higher one.

Reads BUILD/layers.txt (written by CMake: one line per layer library
"name|archive|dir-or-header ...|dep dep..."; a header-only layer has no archive and names its
headers) and fails when
  - a source or header in a layer's folders #includes a project header of a layer that is not
    the layer itself or one of its (transitive) dependencies, or
  - a layer's archive needs a symbol that only layers outside its dependencies define
    (checked with nm on the built static libraries).
Usage: scripts/check_layers.py BUILD_DIR
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def load(build):
    layers = {}
    with open(os.path.join(build, "layers.txt")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            name, archive, dirs, deps = line.split("|")
            layers[name] = {"archive": archive, "dirs": dirs.split(),
                            "deps": [d for d in deps.split() if d.startswith("sluice_")]}
    return layers


def closure(layers, name):
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(layers[n]["deps"])
    return seen


def owners(layers):
    """(folder -> layer, header file -> layer); a header named by a layer wins over its folder."""
    dirs, files = {}, {}
    for name, l in layers.items():
        for d in l["dirs"]:
            (files if d.endswith(".h") else dirs)[d] = name
    return dirs, files


def files_of(layer, files_owned):
    for d in layer["dirs"]:
        if d.endswith(".h"):
            yield d
            continue
        for fn in sorted(os.listdir(os.path.join(ROOT, d))):
            path = f"{d}/{fn}"
            if fn.endswith((".h", ".cpp")) and path not in files_owned:
                yield path


def check_includes(layers):
    dirs, files = owners(layers)
    problems = []
    for name, l in layers.items():
        allowed = closure(layers, name)
        for path in files_of(l, files):
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                target = files.get(inc) or dirs.get(os.path.dirname(inc))
                if target is not None and target not in allowed:
                    problems.append(f"{path}: includes {inc} ({target}), "
                                    f"but {name} depends only on {sorted(allowed - {name})}")
    return problems


def symbols(archive, flag):
    out = subprocess.run(["nm", "-g", flag, archive], capture_output=True, text=True, check=True)
    syms = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.endswith(":"):
            syms.add(parts[-1])
    return syms


def check_symbols(layers):
    built = {n: l for n, l in layers.items() if l["archive"]}
    defined = {n: symbols(l["archive"], "--defined-only") for n, l in built.items()}
    problems = []
    for name, l in built.items():
        allowed = closure(layers, name)
        for sym in sorted(symbols(l["archive"], "--undefined-only") - defined[name]):
            owners = {n for n, d in defined.items() if sym in d}
            if owners and not owners & allowed:
                pretty = subprocess.run(["c++filt", sym], capture_output=True,
                                        text=True).stdout.strip()
                problems.append(f"{name} needs {pretty} from {sorted(owners)}")
    return problems


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    layers = load(build)
    problems = check_includes(layers) + check_symbols(layers)
    for p in problems:
        print("layering:", p, file=sys.stderr)
    if problems:
        return 1
    print(f"layering: ok ({len(layers)} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
