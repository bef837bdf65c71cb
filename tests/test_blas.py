"""BLAS choice for MLX's child processes: detection, the preload it sets up, what the child really maps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthia import blas

ON_LINUX = sys.platform.startswith("linux")
needs_linux = pytest.mark.skipif(not ON_LINUX, reason="LD_PRELOAD and /proc/<pid>/maps are Linux-only")

FAKE_BUNDLED = Path("/site-packages/mlx_cpu.libs/libblas-0123abcd.so.3.10.0")
FAKE_CPU_INSTALL = blas.MlxInstall(
    platform="linux", libmlx=Path("/site-packages/mlx/lib/libmlx.so"),
    needed=("liblapack-4567cdef.so.3.10.0", FAKE_BUNDLED.name, "libc.so.6"),
    linked_blas=FAKE_BUNDLED, distributions=frozenset({"mlx", "mlx-cpu"}))
FAKE_OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
PRELOAD_CHOICE = blas.BlasChoice("preload", FAKE_OPENBLAS, "mode auto, default")

# Imports only mlx (not numpy, whose wheel maps an OpenBLAS of its own), multiplies, then waits so
# the parent can read its /proc/<pid>/maps.
CHILD_SCRIPT = """
import sys
import mlx.core as mx
a = mx.arange(64 * 64, dtype=mx.float32).reshape(64, 64) / 4096.0
print(f"ready {(a @ a.T).sum().item():.6f}", flush=True)
sys.stdin.readline()
"""


def real_install():
    install = blas.inspect_mlx_install()
    if blas.mlx_backend(install) != "cpu" or blas.bundled_reference_blas(install) is None:
        pytest.skip("needs the mlx[cpu] wheel on Linux (MLX linked with its bundled reference BLAS)")
    return install


def clean_environment():
    """The test runner's environment without the settings under test."""
    return {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", blas.ENV_VAR)}


def libraries_and_result_of_child(env):
    """(BLAS libraries mapped in a child that imported mlx and ran a matmul, the matmul's sum)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        libraries = blas.loaded_blas_libraries(child.pid) if line.startswith("ready") else []
    finally:
        _, errors = child.communicate("\n", timeout=60)
    assert line.startswith("ready"), f"the child failed: {errors}"
    return libraries, float(line.split()[1])


def openblas_in(libraries):
    return [path for path in libraries if "openblas" in Path(path).name.lower()]


@pytest.fixture
def no_system_blas(monkeypatch, tmp_path):
    """The system library search pointed at an empty loader cache and an empty directory."""
    monkeypatch.setattr(blas, "ldconfig_output", lambda: "")
    monkeypatch.setattr(blas, "standard_library_dirs", lambda machine=None: [tmp_path])


# --- detection on this machine ---------------------------------------------------------------------------
@needs_linux
def test_libmlx_links_the_wheels_bundled_reference_blas():
    install = real_install()
    bundled = blas.bundled_reference_blas(install)
    assert bundled.is_file()
    assert bundled.name.startswith("libblas") and bundled.parent.name.endswith(".libs")
    assert bundled.name in install.needed
    assert blas.blas_family(bundled) == "reference BLAS"


@needs_linux
def test_elf_reader_sees_what_libmlx_imports_from_the_bundled_blas():
    install = real_install()
    needed, search_dirs = blas.elf_dynamic_entries(install.libmlx)
    assert install.linked_blas.name in needed
    assert any("$ORIGIN" in directory for directory in search_dirs)
    assert set(blas.CBLAS_SYMBOLS_MLX_CALLS) <= blas.elf_defined_symbols(install.linked_blas)


def test_elf_readers_return_nothing_for_non_elf_files(tmp_path):
    text_file = tmp_path / "libopenblas.so.0"
    text_file.write_text("not a library")
    assert blas.elf_identity(text_file) is None
    assert blas.elf_dynamic_entries(text_file) == ([], [])
    assert blas.elf_defined_symbols(tmp_path / "missing.so") == set()
    assert not blas.exports_mlx_cblas(text_file)


# --- what a child process actually maps ------------------------------------------------------------------
@needs_linux
def test_auto_child_maps_system_openblas():
    install = real_install()
    if blas.find_system_blas(reference=install.libmlx) is None:
        pytest.skip("no system OpenBLAS here (Debian/Ubuntu: apt-get install libopenblas0-pthread)")
    env, note = blas.child_environment("auto", clean_environment())
    assert env["LD_PRELOAD"] and "preloaded in child processes" in note
    libraries, _ = libraries_and_result_of_child(env)
    assert openblas_in(libraries), libraries


@needs_linux
def test_bundled_child_maps_reference_blas_only_and_computes_the_same():
    install = real_install()
    env, note = blas.child_environment("bundled", clean_environment())
    assert "LD_PRELOAD" not in env and note == "BLAS: bundled reference BLAS (chosen with --blas bundled)"
    libraries, bundled_result = libraries_and_result_of_child(env)
    assert str(blas.bundled_reference_blas(install)) in libraries
    assert not openblas_in(libraries), libraries
    if blas.find_system_blas(reference=install.libmlx) is not None:
        _, system_result = libraries_and_result_of_child(blas.child_environment("auto", clean_environment())[0])
        assert system_result == pytest.approx(bundled_result, rel=1e-5)


# --- decisions, with the machine faked -------------------------------------------------------------------
def test_user_ld_preload_is_preserved(monkeypatch):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    monkeypatch.setattr(blas, "find_system_blas", lambda reference=None: Path(FAKE_OPENBLAS))
    env, note = blas.child_environment("auto", {"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"})
    assert env["LD_PRELOAD"] == f"{FAKE_OPENBLAS}:/opt/lib/libjemalloc.so.2"
    assert note == f"BLAS: system OpenBLAS {FAKE_OPENBLAS} (preloaded in child processes; opt-out: --blas bundled)"
    env, _ = blas.child_environment(base_env={"LD_PRELOAD": f"{FAKE_OPENBLAS} /opt/lib/libjemalloc.so.2"},
                                    choice=PRELOAD_CHOICE)
    assert env["LD_PRELOAD"] == f"{FAKE_OPENBLAS} /opt/lib/libjemalloc.so.2"


def test_a_blas_the_user_preloads_wins(monkeypatch):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    user_env = {"LD_PRELOAD": "/opt/intel/lib/libmkl_rt.so.2"}
    env, note = blas.child_environment("auto", user_env)
    assert env == user_env
    assert note == "BLAS: MKL /opt/intel/lib/libmkl_rt.so.2 (already in your LD_PRELOAD, kept)"


def test_no_system_blas_means_no_preload_and_one_warning(monkeypatch, no_system_blas):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    base = {"PATH": "/usr/bin", "LD_PRELOAD": "/opt/lib/libjemalloc.so.2"}
    env, note = blas.child_environment("auto", base)
    assert env == base
    assert note.startswith("BLAS: bundled reference BLAS, slow")
    warning = blas.missing_blas_warning("auto", base)
    assert "sudo apt-get install libopenblas0-pthread" in warning
    assert "sudo dnf install openblas-threads" in warning


def test_no_warning_when_the_bundled_blas_is_chosen_or_a_system_one_is_used(monkeypatch, no_system_blas):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    assert blas.missing_blas_warning("bundled", {}) is None
    assert blas.missing_blas_warning(None, {blas.ENV_VAR: "bundled"}) is None
    assert blas.missing_blas_warning(choice=PRELOAD_CHOICE) is None


@pytest.mark.parametrize("platform_name, reason", [("darwin", "Metal"), ("win32", "platform win32")])
def test_nothing_changes_off_linux(monkeypatch, platform_name, reason):
    monkeypatch.setattr(blas.sys, "platform", platform_name)
    base = {"PATH": "/usr/bin"}
    env, note = blas.child_environment("auto", base)
    assert env == base
    assert note == f"BLAS: not applicable ({reason})"
    assert blas.missing_blas_warning() is None


def test_nothing_changes_with_mlx_cuda(monkeypatch):
    cuda_install = blas.MlxInstall(
        platform="linux", libmlx=Path("/site-packages/mlx/lib/libmlx.so"),
        needed=(FAKE_BUNDLED.name, "libcublasLt.so.12", "libcuda.so.1"),
        linked_blas=FAKE_BUNDLED, distributions=frozenset({"mlx", "mlx-cuda-12"}))
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: cuda_install)
    assert blas.child_environment("auto", {}) == ({}, "BLAS: not applicable (CUDA)")


def test_backend_from_packages_when_libmlx_is_not_found():
    def install(platform_name, *distributions):
        return blas.MlxInstall(platform_name, None, distributions=frozenset(distributions))
    assert blas.mlx_backend(install("linux", "mlx", "mlx-cuda-13")) == "cuda"
    assert blas.mlx_backend(install("linux", "mlx", "mlx-cpu")) == "cpu"
    assert blas.mlx_backend(install("linux")) == "absent"
    assert blas.mlx_backend(install("darwin", "mlx", "mlx-metal")) == "metal"


def test_an_mlx_linked_with_a_fast_blas_gets_no_preload(monkeypatch):
    openblas_build = blas.MlxInstall("linux", Path("/src/mlx/lib/libmlx.so"), ("libopenblas.so.0",),
                                     Path("/usr/lib/libopenblas.so.0"), frozenset({"mlx"}))
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: openblas_build)
    assert blas.child_environment("auto", {}) == ({}, "BLAS: OpenBLAS /usr/lib/libopenblas.so.0 (linked by MLX itself)")


# --- the mode ---------------------------------------------------------------------------------------------
def test_explicit_mode_beats_the_environment_variable():
    assert blas.resolve_mode("auto", {blas.ENV_VAR: "bundled"}) == ("auto", "--blas auto", None)
    assert blas.resolve_mode(None, {blas.ENV_VAR: "Bundled"}) == ("bundled", "SYNTHIA_BLAS=bundled", None)
    assert blas.resolve_mode(None, {}) == ("auto", "default", None)
    with pytest.raises(ValueError):
        blas.resolve_mode("openblas", {})


def test_environment_variable_opt_out_and_unknown_values(monkeypatch):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    env, note = blas.child_environment(None, {blas.ENV_VAR: "bundled"})
    assert note == "BLAS: bundled reference BLAS (chosen with SYNTHIA_BLAS=bundled)"
    assert "LD_PRELOAD" not in env
    choice = blas.choose_blas(None, {blas.ENV_VAR: "off"})
    assert choice.ignored_setting == "off" and "ignored SYNTHIA_BLAS='off'" in blas.describe(choice)


# --- the library search -----------------------------------------------------------------------------------
LDCONFIG_SAMPLE = """3 libs found in cache `/etc/ld.so.cache'
\tlibopenblas64.so.0 (libc6,x86-64) => {dir}/libopenblas64.so.0
\tlibopenblas.so.0 (libc6,x86-64) => {dir}/libopenblas.so.0
\tlibblis.so.4 (libc6,x86-64) => {dir}/libblis.so.4
"""


def test_parse_ldconfig():
    cache = blas.parse_ldconfig(LDCONFIG_SAMPLE.format(dir="/lib/x86_64-linux-gnu"))
    assert cache["libopenblas.so.0"] == ["/lib/x86_64-linux-gnu/libopenblas.so.0"]
    assert set(cache) == {"libopenblas64.so.0", "libopenblas.so.0", "libblis.so.4"}


def test_candidates_are_openblas_first_lp64_only_and_deduplicated(tmp_path):
    cache_dir, fedora_dir = tmp_path / "cache", tmp_path / "lib64"
    cache_dir.mkdir(), fedora_dir.mkdir()
    for name in ("libopenblas64.so.0", "libopenblas.so.0", "libblis.so.4"):
        (cache_dir / name).write_bytes(b"")
    (fedora_dir / "libopenblasp.so.0").write_bytes(b"")
    (fedora_dir / "libopenblas.so.0").symlink_to(cache_dir / "libopenblas.so.0")
    candidates = blas.candidate_blas_libraries(LDCONFIG_SAMPLE.format(dir=cache_dir), [fedora_dir])
    assert candidates == [fedora_dir / "libopenblasp.so.0", cache_dir / "libopenblas.so.0", cache_dir / "libblis.so.4"]


def test_libraries_without_the_cblas_mlx_calls_are_skipped(tmp_path):
    empty = tmp_path / "libopenblas.so.0"
    empty.write_bytes(b"\x7fELF")
    assert blas.find_system_blas([empty]) is None


def test_standard_dirs_cover_debian_fedora_and_aarch64():
    dirs = [str(d) for d in blas.standard_library_dirs("aarch64")]
    assert "/usr/lib/aarch64-linux-gnu/openblas-pthread" in dirs and "/usr/lib64" in dirs


@needs_linux
def test_loaded_blas_libraries_reads_proc_maps():
    libraries = blas.loaded_blas_libraries(os.getpid())
    assert all(path.startswith("/") and blas.is_blas_like(path) for path in libraries)
