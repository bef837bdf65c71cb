"""Give MLX's CPU backend a real BLAS in the child processes that train, fuse and evaluate.

On Linux the mlx[cpu] wheel (distribution mlx-cpu) installs mlx/lib/libmlx.so linked against a
reference BLAS it bundles in site-packages/mlx_cpu.libs/libblas-<hash>.so.3.10.0: netlib's textbook
loops, single-digit float32 GFLOP/s. Preloading a system OpenBLAS (LD_PRELOAD) makes the dynamic
loader bind MLX's cblas_sgemm & co. to it instead: same results, 15-30x faster matmul. The loader
decides at process start, so the pipeline puts LD_PRELOAD in the environment of its child processes;
the parent never needs a BLAS.

The mode, first that is set:
  1. the mode passed in (train_mlx.py --blas auto|bundled),
  2. the environment variable SYNTHIA_BLAS=auto|bundled,
  3. "auto".
"auto" preloads a system CBLAS when MLX runs on a Linux CPU with the bundled reference BLAS and one is
found: OpenBLAS (pthreads, OpenMP, then plain builds; where `ldconfig -p` says, then the usual
Debian/Ubuntu, Fedora and /opt locations), then BLIS. "bundled" changes nothing. On macOS (Metal) and
with mlx[cuda] nothing changes either, and a BLAS the user already preloads through LD_PRELOAD is kept.
A Linux CPU with no system BLAS gets one warning with the install command, never an error.

Nothing here imports mlx: the backend and the BLAS it links are read from the installed distributions
and from libmlx.so's ELF dynamic section, and a candidate library's exported symbols from its ELF
symbol table, so no BLAS is ever loaded into the parent.

    env, note = child_environment(args.blas)     # args.blas: "auto", "bundled" or None
    log(note)                                    # e.g. "BLAS: system OpenBLAS /usr/lib/... (preloaded ...)"
    warning = missing_blas_warning(args.blas)    # None unless a Linux CPU lacks a system BLAS
    subprocess.run([...], env=env)
"""

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ENV_VAR = "SYNTHIA_BLAS"
MODES = ("auto", "bundled")
OPT_OUT_HINT = "--blas bundled"

# The CBLAS entry points libmlx.so imports (nm -D --undefined-only libmlx.so); its LAPACK calls
# (sgetrf_, ssyevd_, ...) stay with the bundled liblapack, whose own BLAS calls the preload also speeds up.
CBLAS_SYMBOLS_MLX_CALLS = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm")

# Only 32-bit-integer (LP64) builds: libopenblas64.so.0 exports unsuffixed cblas_sgemm taking 64-bit
# ints and would corrupt MLX's calls, so it is deliberately absent. Threaded builds first.
OPENBLAS_NAMES = ("libopenblasp.so.0", "libopenblaso.so.0", "libopenblas.so.0")
BLIS_NAMES = ("libblis.so.4", "libblis.so.3")
SYSTEM_BLAS_NAMES = OPENBLAS_NAMES + BLIS_NAMES

CUDA_LIBRARY_PREFIXES = ("libcuda.", "libcudart", "libcublas", "libnvrtc")
# bench/blas.py on a 2-core EPYC (bench/BENCHMARKS.md): matmul 17-26x, LoRA training 12-15x; more cores gain more.
TRAINING_SPEEDUP, MATMUL_SPEEDUP = "over 10x", "15-30x"

INSTALL_COMMANDS = (
    ("Debian/Ubuntu", "sudo apt-get install libopenblas0-pthread"),
    ("Fedora/RHEL", "sudo dnf install openblas-threads"),
)


# ---------------------------------------------------------------------------------------------------------
# Reading ELF shared libraries (only what the loader needs: DT_NEEDED, RPATH/RUNPATH, exported symbols)
# ---------------------------------------------------------------------------------------------------------
SHT_DYNSYM, SHT_DYNAMIC = 11, 6
DT_NEEDED, DT_RPATH, DT_RUNPATH = 1, 15, 29


@dataclass(frozen=True)
class _Section:
    kind: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class ElfIdentity:
    is_64bit: bool
    little_endian: bool
    machine: int


def _read_at(f, offset, size):
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated ELF file")
    return data


def _elf_identity_and_sections(f):
    ident = _read_at(f, 0, 16)
    if ident[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    identity_64, little = ident[4] == 2, ident[5] == 1
    order = "<" if little else ">"
    header_format = order + ("HHIQQQIHHHHHH" if identity_64 else "HHIIIIIHHHHHH")
    fields = struct.unpack(header_format, _read_at(f, 16, struct.calcsize(header_format)))
    machine, section_offset, section_entry_size, section_count = fields[1], fields[5], fields[10], fields[11]
    section_format = order + ("IIQQQQIIQQ" if identity_64 else "IIIIIIIIII")
    sections = []
    for index in range(section_count):
        raw = _read_at(f, section_offset + index * section_entry_size, struct.calcsize(section_format))
        _, kind, _, _, offset, size, link, _, _, _ = struct.unpack(section_format, raw)
        sections.append(_Section(kind, offset, size, link))
    return ElfIdentity(identity_64, little, machine), sections


def _string_at(table, offset):
    return table[offset:table.index(b"\0", offset)].decode("utf-8", "replace")


def elf_identity(path):
    """Word size, byte order and machine of an ELF file, or None if it is not one."""
    try:
        with open(path, "rb") as f:
            return _elf_identity_and_sections(f)[0]
    except (OSError, ValueError, struct.error):
        return None


def elf_dynamic_entries(path):
    """(DT_NEEDED names, RPATH + RUNPATH directories as written) of a shared library; ([], []) if unreadable."""
    try:
        with open(path, "rb") as f:
            identity, sections = _elf_identity_and_sections(f)
            entry_format = ("<" if identity.little_endian else ">") + ("qQ" if identity.is_64bit else "iI")
            entry_size = struct.calcsize(entry_format)
            needed, search_dirs = [], []
            for section in (s for s in sections if s.kind == SHT_DYNAMIC):
                strings = _read_at(f, sections[section.link].offset, sections[section.link].size)
                raw = _read_at(f, section.offset, section.size)
                for tag, value in struct.iter_unpack(entry_format, raw[:len(raw) - len(raw) % entry_size]):
                    if tag == DT_NEEDED:
                        needed.append(_string_at(strings, value))
                    elif tag in (DT_RPATH, DT_RUNPATH):
                        search_dirs += [d for d in _string_at(strings, value).split(":") if d]
            return needed, search_dirs
    except (OSError, ValueError, IndexError, struct.error):
        return [], []


def elf_defined_symbols(path):
    """Names a shared library defines in its dynamic symbol table (what LD_PRELOAD can interpose)."""
    try:
        with open(path, "rb") as f:
            identity, sections = _elf_identity_and_sections(f)
            symbol_format = ("<" if identity.little_endian else ">") + ("IBBHQQ" if identity.is_64bit else "IIIBBH")
            symbol_size = struct.calcsize(symbol_format)
            defined = set()
            for section in (s for s in sections if s.kind == SHT_DYNSYM):
                strings = _read_at(f, sections[section.link].offset, sections[section.link].size)
                raw = _read_at(f, section.offset, section.size)
                for fields in struct.iter_unpack(symbol_format, raw[:len(raw) - len(raw) % symbol_size]):
                    name_offset = fields[0]
                    section_index = fields[3] if identity.is_64bit else fields[5]
                    if name_offset and section_index != 0:  # section 0 = undefined: imported, not exported
                        defined.add(_string_at(strings, name_offset))
            return defined
    except (OSError, ValueError, IndexError, struct.error):
        return set()


def resolve_needed(library, name, search_dirs):
    """Where the loader finds `name` through `library`'s RPATH/RUNPATH ($ORIGIN expanded), else None."""
    origin = str(Path(library).parent)
    for directory in search_dirs:
        candidate = Path(directory.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)) / name
        if candidate.is_file():
            return Path(os.path.normpath(candidate))
    return None


# ---------------------------------------------------------------------------------------------------------
# The MLX installation: backend and linked BLAS
# ---------------------------------------------------------------------------------------------------------
def is_linux(platform_name=None):
    return (platform_name or sys.platform).startswith("linux")


def is_blas_like(path):
    """True for BLAS libraries by file name: OpenBLAS (also numpy's), reference libblas, BLIS, MKL, FlexiBLAS."""
    name = Path(path).name.lower()
    return "openblas" in name or name.startswith(("libblas", "libcblas", "libblis", "libmkl", "libflexiblas"))


def blas_family(path):
    """Human name of a BLAS library, from its file name (symlinks followed)."""
    name = Path(os.path.realpath(path)).name.lower() + " " + Path(path).name.lower()
    for needle, family in (("openblas", "OpenBLAS"), ("blis", "BLIS"), ("mkl", "MKL"), ("flexiblas", "FlexiBLAS")):
        if needle in name:
            return family
    return "reference BLAS" if "libblas" in name else Path(path).name


def find_libmlx():
    """Path of mlx/lib/libmlx.so in the installed mlx package, found without importing mlx."""
    try:
        spec = importlib.util.find_spec("mlx")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "lib" / "libmlx.so"
        if candidate.is_file():
            return candidate
    return None


def installed_mlx_distributions():
    """Normalised names of the installed MLX distributions: mlx, mlx-cpu, mlx-metal, mlx-cuda-12, ..."""
    names = set()
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower())
        if name == "mlx" or name.startswith(("mlx-cpu", "mlx-cuda", "mlx-metal")):
            names.add(name)
    return frozenset(names)


@dataclass(frozen=True)
class MlxInstall:
    """What decides the BLAS question, gathered once: platform, libmlx.so and what it links."""
    platform: str
    libmlx: Path | None
    needed: tuple = ()  # DT_NEEDED names of libmlx.so
    linked_blas: Path | None = None  # the BLAS libmlx.so links, resolved through its RPATH
    distributions: frozenset = frozenset()


def inspect_mlx_install(platform_name=None):
    platform_name = platform_name or sys.platform
    libmlx = find_libmlx() if is_linux(platform_name) else None
    if libmlx is None:
        return MlxInstall(platform_name, None, distributions=installed_mlx_distributions())
    needed, search_dirs = elf_dynamic_entries(libmlx)
    blas_names = [name for name in needed if is_blas_like(name)]
    linked = resolve_needed(libmlx, blas_names[0], search_dirs) if blas_names else None
    if blas_names and linked is None:
        linked = Path(blas_names[0])  # found by the loader through its cache; the name is all we know
    return MlxInstall(platform_name, libmlx, tuple(needed), linked, installed_mlx_distributions())


def mlx_backend(install):
    """"metal" (macOS), "cuda" (mlx[cuda]), "cpu" (mlx[cpu] or a CPU build), "absent" or "unsupported"."""
    if install.platform == "darwin":
        return "metal"
    if not is_linux(install.platform):
        return "unsupported"
    # libmlx.so itself says which wheel was installed last (mlx-cpu and mlx-cuda-* both write it).
    if any(name.startswith(CUDA_LIBRARY_PREFIXES) for name in install.needed):
        return "cuda"
    if install.libmlx is not None:
        return "cpu"
    if any(name.startswith("mlx-cuda") for name in install.distributions):
        return "cuda"
    return "cpu" if install.distributions else "absent"


def bundled_reference_blas(install):
    """The reference BLAS libmlx.so links (the wheel's mlx_cpu.libs/libblas-*.so.3), or None if it links another."""
    if install.linked_blas is None:
        return None
    return install.linked_blas if blas_family(install.linked_blas) == "reference BLAS" else None


# ---------------------------------------------------------------------------------------------------------
# Finding a system CBLAS
# ---------------------------------------------------------------------------------------------------------
def ldconfig_output():
    """Text of `ldconfig -p` (the loader cache), or "" where there is none (musl, containers without it)."""
    for command in (shutil.which("ldconfig"), "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if command and os.path.isfile(command):
            try:
                cache = subprocess.run([command, "-p"], capture_output=True, text=True, timeout=10, check=False)
                return cache.stdout
            except (OSError, subprocess.SubprocessError):
                return ""
    return ""


def parse_ldconfig(text):
    """{library name: [paths]} from `ldconfig -p` output, in its order."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S.*?)\s*$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(3))
    return found


def standard_library_dirs(machine=None):
    """Where distributions put OpenBLAS/BLIS when the loader cache does not list it (or is missing)."""
    machine = machine or platform.machine()
    triplet = f"/usr/lib/{machine}-linux-gnu"
    debian = [triplet] + [f"{triplet}/{flavour}" for flavour in (
        "openblas-pthread", "openblas-openmp", "openblas-serial", "blis-pthread", "blis-openmp", "blis-serial")]
    return [Path(d) for d in debian + ["/usr/lib64", "/usr/lib", "/usr/local/lib64", "/usr/local/lib",
                                       "/opt/OpenBLAS/lib"]]


def candidate_blas_libraries(ldconfig_text=None, dirs=None):
    """Existing system BLAS files, best first: per name, the loader cache's paths then the standard dirs."""
    cache = parse_ldconfig(ldconfig_output() if ldconfig_text is None else ldconfig_text)
    dirs = standard_library_dirs() if dirs is None else dirs
    seen, candidates = set(), []
    for name in SYSTEM_BLAS_NAMES:
        for path in cache.get(name, []) + [str(Path(d) / name) for d in dirs]:
            real = os.path.realpath(path)
            # LD_PRELOAD splits on spaces and colons, so such paths cannot be preloaded.
            if real not in seen and os.path.isfile(path) and not re.search(r"[\s:]", path):
                seen.add(real)
                candidates.append(Path(path))
    return candidates


def exports_mlx_cblas(path, reference=None):
    """True if `path` defines every CBLAS function MLX calls (and, given `reference`, is built for its machine)."""
    if reference is not None and elf_identity(path) != elf_identity(reference):
        return False
    defined = elf_defined_symbols(path)
    return all(symbol in defined for symbol in CBLAS_SYMBOLS_MLX_CALLS)


def find_system_blas(candidates=None, reference=None):
    """The first usable system CBLAS library, or None."""
    candidates = candidate_blas_libraries() if candidates is None else candidates
    return next((path for path in candidates if exports_mlx_cblas(path, reference)), None)


# ---------------------------------------------------------------------------------------------------------
# The choice and the child environment
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlasChoice:
    """kind: "preload" (a system BLAS goes into LD_PRELOAD), "user-preload" (LD_PRELOAD already has one),
    "bundled" (the wheel's reference BLAS stays), "linked" (libmlx.so links a fast BLAS itself) or
    "not-applicable" (macOS, CUDA, no mlx)."""
    kind: str
    library_path: str | None
    reason: str
    missing_system_blas: bool = False
    ignored_setting: str | None = None  # a SYNTHIA_BLAS value that is neither auto nor bundled


def resolve_mode(mode=None, environ=None):
    """(mode, its source, an ignored SYNTHIA_BLAS value or None): the explicit mode, else SYNTHIA_BLAS, else auto."""
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"BLAS mode must be one of {MODES}, not {mode!r}")
        return mode, f"--blas {mode}", None
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if value.lower() in MODES:
        return value.lower(), f"{ENV_VAR}={value.lower()}", None
    return "auto", "default", value or None


def preloaded_blas(environ):
    """A BLAS library already named in LD_PRELOAD, or None."""
    entries = re.split(r"[\s:]+", environ.get("LD_PRELOAD", ""))
    return next((entry for entry in entries if entry and is_blas_like(entry)), None)


def choose_blas(mode=None, environ=None, install=None):
    """Decide which BLAS MLX's child processes use; see the module docstring for the rules."""
    environ = os.environ if environ is None else environ
    mode, source, ignored = resolve_mode(mode, environ)
    choice = _choose(mode, source, environ, inspect_mlx_install() if install is None else install)
    return replace(choice, ignored_setting=ignored)


def _choose(mode, source, environ, install):
    backend = mlx_backend(install)
    if backend != "cpu":
        reasons = {"metal": "Metal", "cuda": "CUDA", "absent": "mlx is not installed"}
        return BlasChoice("not-applicable", None, reasons.get(backend, f"platform {install.platform}"))
    bundled = bundled_reference_blas(install)
    if bundled is None:
        linked = str(install.linked_blas) if install.linked_blas else None
        return BlasChoice("linked", linked, "linked by MLX itself" if linked else "MLX links no BLAS library")
    user_blas = preloaded_blas(environ)
    if user_blas:
        return BlasChoice("user-preload", user_blas, "already in your LD_PRELOAD, kept")
    if mode == "bundled":
        return BlasChoice("bundled", str(bundled), f"chosen with {source}")
    system_blas = find_system_blas(reference=install.libmlx)
    if system_blas is None:
        return BlasChoice("bundled", str(bundled), "no system OpenBLAS found", missing_system_blas=True)
    return BlasChoice("preload", str(system_blas), f"mode auto, {source}")


def with_preload(environ, library):
    """Copy of `environ` with `library` first in LD_PRELOAD, keeping what the user preloads."""
    env = dict(environ)
    existing = env.get("LD_PRELOAD", "").strip()
    if library not in re.split(r"[\s:]+", existing):
        env["LD_PRELOAD"] = f"{library}:{existing}" if existing else library
    return env


def describe(choice):
    """The one log line, e.g. "BLAS: system OpenBLAS /usr/lib/.../libopenblas.so.0 (preloaded in child processes)"."""
    return _describe(choice) + (f" [ignored {ENV_VAR}={choice.ignored_setting!r}: not auto or bundled]"
                                if choice.ignored_setting else "")


def _describe(choice):
    if choice.kind == "preload":
        return (f"BLAS: system {blas_family(choice.library_path)} {choice.library_path} "
                f"(preloaded in child processes; opt-out: {OPT_OUT_HINT})")
    if choice.kind == "bundled" and choice.missing_system_blas:
        return f"BLAS: bundled reference BLAS, slow ({choice.reason}; see the warning)"
    if choice.kind == "bundled":
        return f"BLAS: bundled reference BLAS ({choice.reason})"
    if choice.kind in ("user-preload", "linked") and choice.library_path:
        return f"BLAS: {blas_family(choice.library_path)} {choice.library_path} ({choice.reason})"
    return f"BLAS: not applicable ({choice.reason})"


def child_environment(mode=None, base_env=None, choice=None):
    """(environment for MLX child processes, one log line). mode: "auto", "bundled" or None (SYNTHIA_BLAS/auto)."""
    base_env = dict(os.environ if base_env is None else base_env)
    choice = choose_blas(mode, base_env) if choice is None else choice
    env = with_preload(base_env, choice.library_path) if choice.kind == "preload" else base_env
    return env, describe(choice)


def missing_blas_warning(mode=None, base_env=None, choice=None):
    """The warning for a Linux CPU without a system BLAS (how much faster, how to install), else None."""
    choice = choose_blas(mode, base_env) if choice is None else choice
    if not choice.missing_system_blas:
        return None
    commands = "\n".join(f"    {system + ':':15} {command}" for system, command in INSTALL_COMMANDS)
    return (f"warning: MLX is using the slow reference BLAS bundled with mlx[cpu]; no system OpenBLAS was found.\n"
            f"  With OpenBLAS, LoRA training runs {TRAINING_SPEEDUP} faster (float32 matmul {MATMUL_SPEEDUP}). "
            f"Install it:\n"
            f"{commands}\n"
            f"  and re-run: the pipeline finds it and preloads it into its training processes.\n"
            f"  ({OPT_OUT_HINT} or {ENV_VAR}=bundled keeps the bundled BLAS and silences this.)")


# ---------------------------------------------------------------------------------------------------------
# What a running process actually loaded
# ---------------------------------------------------------------------------------------------------------
def loaded_blas_libraries(pid="self"):
    """BLAS-like shared libraries mapped into process `pid` (from /proc/<pid>/maps), in address order."""
    libraries = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if path.startswith("/") and is_blas_like(path) and path not in libraries:
                libraries.append(path)
    return libraries
