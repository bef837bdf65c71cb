"""BLAS choice for MLX's child processes: detection, the preload it sets up, what the child really maps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthia.platform import blas

ROOT = Path(__file__).resolve().parents[1]
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and ELF are Linux-only")

FAKE_BUNDLED = Path("/site-packages/mlx_cpu.libs/libblas-0123abcd.so.3.10.0")
FAKE_CPU_INSTALL = blas.MlxInstall(
    platform="linux", libmlx=Path("/site-packages/mlx/lib/libmlx.so"),
    needed=("liblapack-4567cdef.so.3.10.0", FAKE_BUNDLED.name, "libc.so.6"),
    linked_blas=FAKE_BUNDLED, distributions=frozenset({"mlx", "mlx-cpu"}))
FAKE_OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
PRELOAD_CHOICE = blas.BlasChoice("preload", FAKE_OPENBLAS, "mode auto, default")

# Imports only mlx (not numpy, whose wheel maps an OpenBLAS of its own), multiplies, then reports the
# BLAS libraries it has mapped the way the training worker does.
CHILD_SCRIPT = """
import json
import mlx.core as mx
from synthia.platform import blas
a = mx.arange(64 * 64, dtype=mx.float32).reshape(64, 64) / 4096.0
print(json.dumps({"sum": (a @ a.T).sum().item(), "libraries": blas.loaded_blas_libraries()}))
"""


def real_install():
    install = blas.inspect_mlx_install()
    if blas.mlx_backend(install) != "cpu" or blas.bundled_reference_blas(install) is None:
        pytest.skip("needs the mlx[cpu] wheel on Linux (MLX linked with its bundled reference BLAS)")
    return install


def real_system_blas(install):
    system = blas.find_system_blas(reference=install.libmlx)
    if system is None:
        pytest.skip("no system OpenBLAS here (Debian/Ubuntu: apt-get install libopenblas0-pthread)")
    return system


def system_libc():
    """A real ELF shared library that is not a BLAS, from the loader cache."""
    paths = [p for p in blas.parse_ldconfig(blas.ldconfig_output()).get("libc.so.6", []) if Path(p).is_file()]
    if not paths:
        pytest.skip("no libc.so.6 in the loader cache")
    return Path(paths[0])


def clean_environment():
    """The test runner's environment without the settings under test."""
    return {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", blas.ENV_VAR)}


def run_child(mode):
    """(the note, what a child started with child_environment(mode) reported: matmul sum and BLAS libraries)."""
    env, note = blas.child_environment(mode, clean_environment())
    child = subprocess.run([sys.executable, "-c", CHILD_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, f"the child failed: {child.stderr}"
    return env, note, json.loads(child.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundled_child():
    real_install()
    return run_child("bundled")


@pytest.fixture(scope="module")
def auto_child():
    real_system_blas(real_install())
    return run_child("auto")


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
def test_libraries_without_the_cblas_mlx_calls_are_skipped(tmp_path):
    bundled = blas.bundled_reference_blas(real_install())  # exports cblas_sgemm & co.: the positive case
    not_elf = tmp_path / "libopenblas.so.0"
    not_elf.write_text("not a library")
    truncated = tmp_path / "libblis.so.4"
    truncated.write_bytes(b"\x7fELF")
    skipped = [not_elf, truncated, tmp_path / "missing.so", system_libc()]
    assert blas.find_system_blas(skipped) is None
    assert blas.find_system_blas([*skipped, bundled]) == bundled


@needs_linux
def test_libraries_built_for_another_machine_are_skipped(tmp_path):
    install = real_install()
    bundled = blas.bundled_reference_blas(install)
    data = bytearray(bundled.read_bytes())
    order = "little" if data[5] == 1 else "big"
    other_machine = 62 if int.from_bytes(data[18:20], order) == 183 else 183  # EM_X86_64, EM_AARCH64
    data[18:20] = other_machine.to_bytes(2, order)  # the ELF header's e_machine
    foreign = tmp_path / "libopenblas.so.0"
    foreign.write_bytes(bytes(data))
    assert blas.find_system_blas([foreign]) == foreign  # it does export the CBLAS functions
    assert blas.find_system_blas([foreign, bundled], reference=install.libmlx) == bundled


# --- what a child process actually maps -------------------------------------------------------------------
@needs_linux
def test_auto_child_maps_the_system_openblas(auto_child):
    env, note, reported = auto_child
    assert "preloaded in child processes" in note
    preloaded = os.path.realpath(env["LD_PRELOAD"])
    assert "openblas" in preloaded.lower()
    assert preloaded in reported["libraries"]


@needs_linux
def test_bundled_child_maps_only_the_reference_blas(bundled_child):
    # threadpoolctl does not report a reference BLAS, so this list comes from loaded_blas_libraries' maps fallback.
    env, note, reported = bundled_child
    assert "LD_PRELOAD" not in env and note == "BLAS: bundled reference BLAS (chosen with --blas bundled)"
    assert reported["libraries"] == [os.path.realpath(blas.bundled_reference_blas(real_install()))]


@needs_linux
def test_system_and_bundled_blas_compute_the_same(auto_child, bundled_child):
    assert bundled_child[2]["sum"] != 0
    assert auto_child[2]["sum"] == pytest.approx(bundled_child[2]["sum"], rel=1e-5)


# --- decisions, with the machine faked --------------------------------------------------------------------
def test_user_ld_preload_is_preserved(monkeypatch):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    monkeypatch.setattr(blas, "find_system_blas", lambda reference=None: Path(FAKE_OPENBLAS))
    env, note = blas.child_environment("auto", {"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"})
    assert env["LD_PRELOAD"] == f"{FAKE_OPENBLAS}:/opt/lib/libjemalloc.so.2"
    assert note == f"BLAS: system OpenBLAS {FAKE_OPENBLAS} (preloaded in child processes; opt-out: --blas bundled)"
    env, _ = blas.child_environment(base_env={"LD_PRELOAD": f"{FAKE_OPENBLAS} /opt/lib/libjemalloc.so.2"},
                                    choice=PRELOAD_CHOICE)
    assert env["LD_PRELOAD"] == f"{FAKE_OPENBLAS} /opt/lib/libjemalloc.so.2"


@pytest.mark.parametrize("library, family", [("/opt/intel/lib/libmkl_rt.so.2", "MKL"),
                                             ("/opt/OpenBLAS/lib/libopenblas.so.0", "OpenBLAS")])
def test_a_blas_the_user_preloads_wins(monkeypatch, library, family):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    user_env = {"LD_PRELOAD": f"/opt/lib/libjemalloc.so.2 {library}"}
    env, note = blas.child_environment("auto", user_env)
    assert env == user_env
    assert note == f"BLAS: {family} {library} (already in your LD_PRELOAD, kept)"


def test_no_system_blas_means_no_preload_and_one_warning(monkeypatch, no_system_blas):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    base = {"PATH": "/usr/bin", "LD_PRELOAD": "/opt/lib/libjemalloc.so.2"}
    env, note = blas.child_environment("auto", base)
    assert env == base
    assert note == "BLAS: bundled reference BLAS, slow (no system OpenBLAS found; see the warning)"
    warning = blas.missing_blas_warning("auto", base)
    assert warning.count("warning:") == 1
    assert "sudo apt-get install libopenblas0-pthread" in warning
    assert "sudo dnf install openblas-threads" in warning


def test_no_warning_when_the_bundled_blas_is_chosen_or_a_system_one_is_used(monkeypatch, no_system_blas):
    monkeypatch.setattr(blas, "inspect_mlx_install", lambda: FAKE_CPU_INSTALL)
    assert blas.missing_blas_warning("auto", {}) is not None  # the machine does lack a system BLAS
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
    with pytest.raises(ValueError, match="openblas"):
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


def test_standard_dirs_cover_debian_fedora_and_aarch64():
    dirs = [str(d) for d in blas.standard_library_dirs("aarch64")]
    assert "/usr/lib/aarch64-linux-gnu/openblas-pthread" in dirs and "/usr/lib64" in dirs
