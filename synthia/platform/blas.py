"""Give MLX's CPU backend a real BLAS in the child processes that train, fuse and evaluate.

On Linux the mlx[cpu] wheel's libmlx.so links a reference BLAS it bundles (site-packages/mlx_cpu.libs/
libblas-<hash>.so.3): netlib's textbook loops, single-digit float32 GFLOP/s. Preloading a system OpenBLAS
(LD_PRELOAD) makes the dynamic loader bind MLX's cblas_sgemm & co. to it instead: same results, 15-30x
faster matmul. The loader decides at process start, so only the children's environment changes.

Mode, first that is set: the one passed in (train_mlx.py --blas), SYNTHIA_BLAS=auto|bundled, "auto".
"auto" preloads a system OpenBLAS (else BLIS) when MLX runs on a Linux CPU with the bundled reference BLAS;
"bundled" changes nothing, nor do macOS, mlx[cuda] and a BLAS already in the user's LD_PRELOAD. A Linux CPU
without a system BLAS gets one warning with the install command, never an error.

Nothing here imports mlx or loads a BLAS: libmlx.so and the candidates are read as ELF files.

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
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import threadpoolctl
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

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


# --- Shared libraries read as ELF files (pyelftools), never loaded -------------------------------------------------
def read_elf(path, read):
    """read(ELFFile) for the file at `path`, or None if it is missing or not an ELF file."""
    try:
        with open(path, "rb") as f:
            return read(ELFFile(f))
    except (OSError, ELFError):
        return None


def dynamic_dependencies(elf):
    """(DT_NEEDED names, DT_RPATH + DT_RUNPATH directories as written)."""
    dynamic = elf.get_section_by_name(".dynamic")
    if dynamic is None:
        return [], []
    paths = [tag.rpath for tag in dynamic.iter_tags("DT_RPATH")]
    paths += [tag.runpath for tag in dynamic.iter_tags("DT_RUNPATH")]
    return [tag.needed for tag in dynamic.iter_tags("DT_NEEDED")], [d for p in paths for d in p.split(":") if d]


def architecture(elf):
    return elf.elfclass, elf["e_machine"]


def exports_mlx_cblas(elf):
    """True if the library defines every CBLAS function MLX calls, so a preload can take them over."""
    # The loader finds symbols through the hash table (a library without one exports nothing), and so do
    # we: a lookup instead of parsing OpenBLAS's ~10,000 dynamic symbols.
    table = elf.get_section_by_name(".gnu.hash") or elf.get_section_by_name(".hash")
    symbols = [table.get_symbol(name) if table else None for name in CBLAS_SYMBOLS_MLX_CALLS]
    return all(symbol is not None and symbol["st_shndx"] != "SHN_UNDEF" for symbol in symbols)


def resolve_needed(library, name, search_dirs):
    """Where the loader finds `name` through `library`'s RPATH/RUNPATH ($ORIGIN expanded), else None."""
    origin = str(Path(library).parent)
    for directory in search_dirs:
        candidate = Path(directory.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)) / name
        if candidate.is_file():
            return Path(os.path.normpath(candidate))
    return None


# --- The MLX installation: backend and linked BLAS -----------------------------------------------------------------
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
    locations = (spec.submodule_search_locations or []) if spec else []
    return next((Path(d) / "lib" / "libmlx.so" for d in locations if (Path(d) / "lib" / "libmlx.so").is_file()), None)


def installed_mlx_distributions():
    """Normalised names of the installed MLX distributions: mlx, mlx-cpu, mlx-metal, mlx-cuda-12, ..."""
    names = {re.sub(r"[-_.]+", "-", (d.metadata["Name"] or "").lower()) for d in importlib.metadata.distributions()}
    return frozenset(name for name in names if name == "mlx" or name.startswith(("mlx-cpu", "mlx-cuda", "mlx-metal")))


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
    needed, search_dirs = read_elf(libmlx, dynamic_dependencies) or ([], [])
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


# --- Finding a system CBLAS ----------------------------------------------------------------------------------------
def ldconfig_output():
    """Text of `ldconfig -p` (the loader cache), or "" where there is none (musl, containers without it)."""
    command = shutil.which("ldconfig", path=os.pathsep.join([os.environ.get("PATH", ""), "/sbin", "/usr/sbin"]))
    try:
        return subprocess.run([command, "-p"], capture_output=True, text=True, timeout=10).stdout if command else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_ldconfig(text):
    """{library name: [paths]} from `ldconfig -p` output, in its order."""
    found = {}
    for name, path in re.findall(r"^\s*(\S+)\s+\([^)]*\)\s+=>\s+(\S.*?)\s*$", text, re.MULTILINE):
        found.setdefault(name, []).append(path)
    return found


def standard_library_dirs(machine=None):
    """Where distributions put OpenBLAS/BLIS when the loader cache does not list it (or is missing)."""
    triplet = f"/usr/lib/{machine or platform.machine()}-linux-gnu"
    flavours = [f"{triplet}/{blas}-{threads}" for blas in ("openblas", "blis")
                for threads in ("pthread", "openmp", "serial")]
    return [Path(d) for d in [triplet, *flavours, "/usr/lib64", "/usr/lib", "/usr/local/lib64", "/usr/local/lib",
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


def find_system_blas(candidates=None, reference=None):
    """The first candidate exporting the CBLAS MLX calls (built for `reference`'s machine, if given), or None."""
    candidates = candidate_blas_libraries() if candidates is None else candidates
    machine = read_elf(reference, architecture) if reference else None

    def usable(elf):
        return (machine is None or architecture(elf) == machine) and exports_mlx_cblas(elf)
    return next((path for path in candidates if read_elf(path, usable)), None)


# --- The choice and the child environment --------------------------------------------------------------------------
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


def child_setup(mode, log):
    """The environment for MLX child processes and its BLAS line, both said through log (with the warning when a
    Linux CPU has no system BLAS)."""
    choice = choose_blas(mode)
    env, note = child_environment(choice=choice)
    log(note)
    warning = missing_blas_warning(choice=choice)
    if warning:
        log(warning)
    return env, note


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


# --- What this process actually loaded -----------------------------------------------------------------------------
def loaded_blas_libraries():
    """Paths of the BLAS libraries mapped in this process: threadpoolctl's, then reference BLAS ones (Linux)."""
    libraries = [info["filepath"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    # threadpoolctl skips every libblas* outside Windows (netlib's reference BLAS has no thread pool), and
    # that is exactly what mlx[cpu] bundles, so the memory map is read for those.
    if os.path.isfile("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            mapped = {line.split(maxsplit=5)[-1].strip() for line in maps}
        libraries += sorted(path for path in mapped - set(libraries)
                            if path.startswith("/") and Path(path).name.startswith(("libblas", "libcblas")))
    return libraries


def rerun_with_system_blas(marker):
    """For scripts (bench/): start this script again with the system BLAS preloaded, since the loader reads
    LD_PRELOAD only at start. `marker` names an environment variable that holds the BLAS note in the new process
    and stops it from starting again."""
    if os.environ.get(marker):
        return
    env, note = child_environment()
    env[marker] = note
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
