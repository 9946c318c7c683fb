"""Make PyPI's Linux `torch` wheel importable on a CPU-only machine without its CUDA packages.

The x86_64 Linux `torch` wheel on PyPI is built with CUDA and links libtorch_cuda.so etc. against
libcudart, libcublas, libcudnn, libnccl, ... which it expects from ~3 GB of nvidia-* wheels. The
oracle only runs on CPU, so instead of downloading those we build tiny stand-in shared libraries
with the same sonames, symbol versions and symbols (every function returns 0 / NULL, except
cudaGetDeviceCount which reports "no device", so torch.cuda.is_available() is False and no CUDA
code path is ever taken). They are placed in torch/lib (on the libraries' $ORIGIN rpath).

Usage: python torch_cpu_stubs.py   (run with the venv's python; needs readelf and cc)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import importlib.util

spec = importlib.util.find_spec("torch")
if spec is None or not spec.submodule_search_locations:
    sys.exit("torch_cpu_stubs: torch is not installed")
libdir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
STAMP = os.path.join(libdir, ".cpu-stubs")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", path))


def dynsyms(path):
    """(name, version or None, type, bind, defined) for each dynamic symbol."""
    out = []
    for line in readelf("--dyn-syms", path).splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":") or not f[0][:-1].isdigit():
            continue
        typ, bind, ndx, name = f[3], f[4], f[6], f[7]
        ver = None
        if "@" in name:
            name, ver = name.split("@", 1)
            ver = ver.lstrip("@")
        out.append((name, ver, typ, bind, ndx != "UND"))
    return out


def verneed(path):
    """version name -> file that must provide it."""
    m, cur = {}, None
    for line in readelf("-V", path).splitlines():
        f = re.search(r"File: (\S+)", line)
        if f:
            cur = f.group(1)
        n = re.search(r"Name: (\S+)\s+Flags", line)
        if n and cur:
            m[n.group(1)] = cur
    return m


def system_libs():
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([exe, "-p"], check=True, capture_output=True, text=True).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2) and m.group(1) not in libs:
            libs[m.group(1)] = m.group(3)
    return libs


def main():
    # stubs made by an earlier run sit in torch/lib too; they are neither torch's nor providers
    stub_names = {l.strip() for l in open(STAMP)} if os.path.exists(STAMP) else set()
    torch_libs = sorted(
        os.path.join(libdir, f)
        for f in os.listdir(libdir)
        if ".so" in f and f not in stub_names and os.path.isfile(os.path.join(libdir, f))
    )
    own = {os.path.basename(p) for p in torch_libs}
    sysl = system_libs()
    missing, sys_needed = set(), set()
    for p in torch_libs:
        for n in needed(p):
            if n in own:
                continue
            if n in sysl and n not in stub_names:
                sys_needed.add(n)
            else:
                missing.add(n)
    defined = set()
    for p in torch_libs + [sysl[n] for n in sys_needed]:
        defined |= {s[0] for s in dynsyms(p) if s[4]}
    per_lib = {m: {} for m in missing}  # soname -> {symbol: (version, type)}
    unversioned = {}
    for p in torch_libs:
        vn = verneed(p)
        for name, ver, typ, bind, is_def in dynsyms(p):
            if is_def or not name:
                continue
            if ver is not None and vn.get(ver) in missing:
                per_lib[vn[ver]][name] = (ver, typ)
            elif ver is None and bind != "WEAK" and name not in defined and not name.startswith(("Py", "_Py")):
                unversioned[name] = typ
    unversioned_libs = [m for m in missing if not any(v[0] for v in per_lib[m].values())] or sorted(missing)[:1]
    for m in unversioned_libs:
        for name, typ in unversioned.items():
            per_lib[m].setdefault(name, (None, typ))
    with tempfile.TemporaryDirectory() as tmp:
        for soname, syms in sorted(per_lib.items()):
            c = ['static const char stub_msg[] = "CUDA stub: no GPU in this CPU-only torch";']
            versions = set()
            for name, (ver, typ) in sorted(syms.items()):
                if ver:
                    versions.add(ver)
                if typ == "OBJECT":
                    c.append(f"char {name}[4096];")
                elif name == "cudaGetDeviceCount":
                    c.append(f"int {name}(int *n) {{ if (n) *n = 0; return 100; }}")  # cudaErrorNoDevice
                elif re.search(r"(GetErrorString|GetErrorName|GetStatusString|GetErrorMessage)$", name):
                    c.append(f"const char *{name}(void) {{ return stub_msg; }}")
                else:
                    c.append(f"long {name}(void) {{ return 0; }}")
            src = os.path.join(tmp, "s.c")
            vs = os.path.join(tmp, "s.map")
            with open(src, "w") as f:
                f.write("\n".join(c) + "\n")
            with open(vs, "w") as f:
                # one node per version, naming its symbols; unversioned ones join the first node
                vers = sorted(versions)
                for i, v in enumerate(vers):
                    names = [n for n, (ver, _) in syms.items() if ver == v or (i == 0 and ver is None)]
                    f.write(f"{v} {{ global: {'; '.join(names)}; local: *; }};\n")
                if not vers:
                    f.write("{ global: *; };\n")
            out = os.path.join(libdir, soname)
            subprocess.run(
                ["cc", "-shared", "-fPIC", "-O0", "-w", "-o", out, src, f"-Wl,-soname,{soname}",
                 f"-Wl,--version-script,{vs}"],
                check=True,
            )
            print(f"torch_cpu_stubs: {soname}: {len(syms)} symbols", file=sys.stderr)
    with open(STAMP, "w") as f:
        f.write("\n".join(sorted(per_lib)) + "\n")


main()
