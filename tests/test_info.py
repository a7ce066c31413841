"""`locomotion info` and the GPU settings (locomotion/gpu.py), on CPU (the GPU check's dry run is
tests/test_end_to_end.py's)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from locomotion import gpu
from locomotion.info import PACKAGES, table
from locomotion.policy import shipped_policies

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL_STR = (str, type(None))
OPTIONAL_INT = (int, type(None))


def test_info_json_has_every_field_and_reports_cpu():
    result = subprocess.run(
        [sys.executable, "-m", "locomotion.cli", "info", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)

    assert info["backend"] == "cpu"
    assert info["devices"] and all(d["platform"] == "cpu" for d in info["devices"])
    for d in info["devices"]:
        assert isinstance(d["id"], int) and isinstance(d["kind"], str)
        assert isinstance(d["process_index"], int)
        assert isinstance(d["memory_bytes"], OPTIONAL_INT)
        assert isinstance(d["memory_in_use_bytes"], OPTIONAL_INT)
    for key in ("device_count", "local_device_count", "process_count", "process_index"):
        assert isinstance(info[key], int), key
    assert info["process_count"] == 1 and info["process_index"] == 0
    assert info["device_count"] == len(info["devices"])

    versions = info["versions"]
    for name in (*PACKAGES, "python", "platform", "nvidia_driver"):
        assert isinstance(versions[name], OPTIONAL_STR), name
    for name in ("jax", "jaxlib", "mujoco", "mujoco-mjx", "flax", "optax", "onnxruntime", "onnx"):
        assert versions[name], f"{name} is a dependency, so it has a version"
    assert versions["jax"] == jax.__version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))

    r = info["rendering"]
    assert isinstance(r["renders"], bool)
    for key in ("MUJOCO_GL", "error", "egl_library", "osmesa_library", "works_with", "install"):
        assert isinstance(r[key], OPTIONAL_STR), key
    if r["renders"]:
        assert r["error"] is None and r["works_with"] and r["install"] is None
    else:  # it must say why, and what to do
        assert r["error"] and r["install"]

    x = info["xla"]
    assert "--xla_cpu_multi_thread_eigen=false" in x["XLA_FLAGS"]
    assert x["matmul_precision"] == "default"  # the CPU is left as JAX sets it
    assert isinstance(x["jax_enable_x64"], bool)
    for key in ("JAX_PLATFORMS", *gpu.MEMORY_VARIABLES):
        assert isinstance(x[key], OPTIONAL_STR), key
    assert x["gpu_settings"] == {}

    assert set(info["policies"]) == set(shipped_policies()) and info["policies"]
    for name, p in info["policies"].items():
        assert p == {"loads": True, "task": p["task"], "error": None}, (name, p)
        assert isinstance(p["task"], str)

    rows = {line.split()[0]: line.split()[1:] for line in table(info).splitlines()}
    assert rows["backend"] == ["cpu"] and rows["renders"][0] in ("yes", "no:")
    assert all(rows[name] == ["loads"] for name in info["policies"])


PROBE = (
    "from locomotion import gpu; gpu.configure_cpu_devices(); import jax; print(jax.device_count())"
)


def with_devices(*command: str, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCOMOTION_CPU_DEVICES", "XLA_FLAGS")}
    env.update(variables)
    return subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, timeout=300
    )


def test_one_cpu_device_per_core_unless_the_user_says_otherwise():
    """`configure_cpu_devices` (what `locomotion train` and `info` call before JAX starts) gives
    XLA a CPU device per core this process may use (LOCOMOTION_CPU_DEVICES unset), the number
    asked for, or the user's own XLA flag; a bad value is a one-line error of the command."""
    cores = len(os.sched_getaffinity(0))
    cases = [
        ({}, cores),
        ({"LOCOMOTION_CPU_DEVICES": "3"}, 3),
        ({"LOCOMOTION_CPU_DEVICES": "1"}, 1),
        (
            {
                "LOCOMOTION_CPU_DEVICES": "3",
                "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            },
            2,
        ),
    ]
    for variables, devices in cases:
        result = with_devices("-c", PROBE, **variables)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == str(devices), variables
    result = with_devices("-m", "locomotion.cli", "info", LOCOMOTION_CPU_DEVICES="two")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "locomotion: error: LOCOMOTION_CPU_DEVICES='two': a positive integer or 'auto'"
    ]


def test_rendering_says_what_works_or_what_to_install(monkeypatch):
    from locomotion import info

    monkeypatch.setattr(info, "try_render", lambda: (False, "RuntimeError: no OpenGL context"))
    monkeypatch.setenv("MUJOCO_GL", "egl")
    libs = {"EGL": None, "OSMesa": "libOSMesa.so.8"}
    monkeypatch.setattr(info.ctypes.util, "find_library", lambda name: libs.get(name))
    tried = []
    monkeypatch.setattr(info, "_renders_in_child", lambda gl: tried.append(gl) or True)
    r = info.rendering()
    assert r["renders"] is False and r["error"] == "RuntimeError: no OpenGL context"
    assert tried == ["osmesa"]  # EGL is missing; the installed OSMesa is tried in a child
    assert r["works_with"] == "osmesa" and "MUJOCO_GL=osmesa" in r["install"]
    libs["OSMesa"] = None  # neither library: name the packages
    r = info.rendering()
    assert r["works_with"] is None and "libegl1" in r["install"] and "libosmesa6" in r["install"]


@pytest.fixture
def clean_gpu_env(monkeypatch):
    """Environment and jax config as on a machine where the user set nothing; restored after."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    for name in ("MUJOCO_GL", *gpu.MEMORY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gpu, "APPLIED", {})
    monkeypatch.setattr(gpu, "_backend_started", lambda: False)
    monkeypatch.setattr(gpu, "_egl_found", lambda: True)
    previous = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", None)
    yield
    jax.config.update("jax_default_matmul_precision", previous)


def test_gpu_settings_do_nothing_on_cpu(clean_gpu_env):
    before = dict(os.environ)
    assert gpu.configure("cpu") == {}
    assert gpu.configure() == {}  # detected: this machine has no GPU
    assert dict(os.environ) == before
    assert jax.config.jax_default_matmul_precision is None
    assert gpu.APPLIED == {}


def test_gpu_settings_on_a_gpu(clean_gpu_env):
    applied = gpu.configure("gpu")  # the flag check runs a real CPU-only XLA in a child
    flags = "--xla_cpu_multi_thread_eigen=false --xla_gpu_triton_gemm_any=True"
    assert applied == {
        "jax_default_matmul_precision": "highest",
        "XLA_FLAGS": flags,
        "MUJOCO_GL": "egl",
    }
    assert jax.config.jax_default_matmul_precision == "highest"
    assert os.environ["XLA_FLAGS"] == flags and os.environ["MUJOCO_GL"] == "egl"
    assert all(name not in os.environ for name in gpu.MEMORY_VARIABLES)  # left to JAX
    assert gpu.APPLIED == applied
    assert gpu.configure("gpu") == {}  # a second call finds everything set


def test_gpu_settings_keep_what_the_user_set(clean_gpu_env, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_triton_gemm_any=false")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    jax.config.update("jax_default_matmul_precision", "float32")
    assert gpu.configure("gpu") == {}
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_triton_gemm_any=false"
    assert os.environ["MUJOCO_GL"] == "osmesa"
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert jax.config.jax_default_matmul_precision == "float32"


def test_gpu_settings_skip_flags_xla_would_reject_or_ignore(clean_gpu_env, monkeypatch):
    assert not gpu.xla_accepts("--xla_no_such_flag=1")  # XLA aborts on it: never set one
    monkeypatch.setattr(gpu, "xla_accepts", lambda flag: False)
    assert "XLA_FLAGS" not in gpu.configure("gpu")
    monkeypatch.setattr(gpu, "xla_accepts", lambda flag: True)
    monkeypatch.setattr(gpu, "_backend_started", lambda: True)  # too late: XLA read its flags
    with pytest.warns(UserWarning, match="after JAX started its backend"):
        assert "XLA_FLAGS" not in gpu.configure("gpu")
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"


def test_detect_backend_without_starting_jax(clean_gpu_env, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_platforms", lambda: "")
    monkeypatch.setattr(gpu, "gpu_plugins", lambda: {})
    assert gpu.detect_backend() == "cpu"
    monkeypatch.setattr(gpu, "gpu_plugins", lambda: {"jax-cuda12-plugin": "0.9.2"})
    monkeypatch.setattr(gpu, "_driver_present", lambda vendor: vendor == "cuda")
    assert gpu.detect_backend() == "gpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden
    assert gpu.detect_backend() == "cpu"
    monkeypatch.setattr(gpu, "_platforms", lambda: "cuda,cpu")
    assert gpu.detect_backend() == "gpu"
    monkeypatch.setattr(gpu, "_platforms", lambda: "cpu")
    assert gpu.detect_backend() == "cpu"


@pytest.mark.slow
def test_flax_that_cannot_run_on_this_jax_is_refused_at_import(monkeypatch):
    """flax <= 0.12.6 on jax 0.11 failed deep in the first network init on a GPU machine."""
    from importlib import metadata

    import locomotion

    def versions(jax_v, flax_v):
        table = {"jax": jax_v, "flax": flax_v}
        monkeypatch.setattr(metadata, "version", lambda name: table[name])

    versions("0.11.2", "0.12.6")
    with pytest.raises(ImportError, match=r"flax>=0.12.7"):
        locomotion._check_flax_for_jax()
    for ok in (("0.11.2", "0.12.8"), ("0.9.2", "0.12.6"), ("0.11.0rc1", "0.12.10")):
        versions(*ok)
        locomotion._check_flax_for_jax()
