"""`locomotion info`: what this machine gives the package, the text to paste into a bug report.

`collect()` returns one JSON-ready dict:

    backend               "cpu" | "gpu" | "tpu"   the JAX backend in use
    devices               [{id, platform, kind, process_index, memory_bytes, memory_in_use_bytes}]
                          (memory from `device.memory_stats()`, None where the backend has none)
    device_count, local_device_count, process_count, process_index     ints
    versions              {jax, jaxlib, mujoco, mujoco-mjx, flax, optax, numpy, onnxruntime, onnx,
                          warp-lang, mujoco-warp, locomotion, python, platform, <GPU plugins>,
                          nvidia_driver}: str, or None where not installed
    rendering             {MUJOCO_GL, renders, error, egl_library, osmesa_library, works_with,
                          install}: whether a tiny `mujoco.Renderer` draws here, and if not
                          which MUJOCO_GL works or which package to install
    xla                   {XLA_FLAGS, matmul_precision, JAX_PLATFORMS, jax_enable_x64, memory
                          variables, gpu_settings}: the settings in effect, with what
                          `locomotion.gpu.configure` set
    policies              {name: {loads, task, error}} for every shipped policy
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import os
import platform
import subprocess
import sys

from locomotion import gpu

PACKAGES = (
    "jax",
    "jaxlib",
    "mujoco",
    "mujoco-mjx",
    "flax",
    "optax",
    "numpy",
    "onnxruntime",
    "onnx",
    "warp-lang",
    "mujoco-warp",
    "locomotion",
)
INSTALL_HINT = (
    "install EGL (GPU driver or Mesa; Debian/Ubuntu: apt-get install libegl1) and set "
    "MUJOCO_GL=egl, or OSMesa (software; apt-get install libosmesa6) and set MUJOCO_GL=osmesa"
)


def collect(policies: bool = True) -> dict:
    """Everything `locomotion info` reports (see the module docstring); starts JAX's backend,
    so call `locomotion.gpu.configure()` first."""
    import jax

    return {
        "backend": jax.default_backend(),
        "devices": devices(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "versions": versions(),
        "rendering": rendering(),
        "xla": xla_settings(),
        "policies": policy_status() if policies else {},
    }


def devices() -> list[dict]:
    """Every device JAX sees, with its memory where the backend reports it."""
    import jax

    out = []
    for d in jax.devices():
        try:
            stats = d.memory_stats() or {}
        except Exception:  # some backends raise instead of returning None
            stats = {}
        out.append(
            {
                "id": d.id,
                "platform": d.platform,
                "kind": d.device_kind,
                "process_index": d.process_index,
                "memory_bytes": stats.get("bytes_limit"),
                "memory_in_use_bytes": stats.get("bytes_in_use"),
            }
        )
    return out


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that matter here, the GPU plugins and the driver."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out.update(gpu.gpu_plugins())
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    out["nvidia_driver"] = _nvidia_driver()
    return out


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as f:
            first = f.readline()
    except OSError:
        return None
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 ..."
    words = first.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), first.strip() or None)


def try_render() -> tuple[bool, str | None]:
    """Render a lit red box at 32x32 with `mujoco.Renderer` under this process's MUJOCO_GL;
    (True, None) when the image shows it, else (False, why)."""
    try:
        import mujoco
        import numpy as np

        model = mujoco.MjModel.from_xml_string(
            '<mujoco><worldbody><light pos="0 0 2"/>'
            '<camera name="c" pos="0 0 1"/>'
            '<geom type="box" size=".1 .1 .1" rgba="1 0 0 1"/></worldbody></mujoco>'
        )
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        renderer = mujoco.Renderer(model, height=32, width=32)
        try:
            renderer.update_scene(data, camera="c")
            pixels = np.asarray(renderer.render())
        finally:
            renderer.close()
    except Exception as err:  # the GL backends raise assorted types
        return False, _one_line(err)
    if pixels.shape != (32, 32, 3) or float(pixels.std()) == 0.0:
        return False, f"the renderer returned a blank image of shape {pixels.shape}"
    return True, None


def _renders_in_child(backend: str) -> bool:
    """Whether a fresh process renders with MUJOCO_GL=`backend` (MuJoCo fixes its OpenGL
    platform at import, so another one can only be tried in another process)."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend, JAX_PLATFORMS="cpu")
    probe = (
        "import sys; from locomotion.info import try_render; sys.exit(0 if try_render()[0] else 1)"
    )
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def rendering() -> dict:
    """The OpenGL platform MuJoCo uses here, whether it renders, and what would fix it."""
    gl = os.environ.get("MUJOCO_GL")
    egl, osmesa = ctypes.util.find_library("EGL"), ctypes.util.find_library("OSMesa")
    renders, error = try_render()
    works_with, install = (gl or "default") if renders else None, None
    if not renders:
        for other, lib in (("egl", egl), ("osmesa", osmesa)):
            if other != gl and lib and _renders_in_child(other):
                works_with, install = other, f"set MUJOCO_GL={other} before starting Python"
                break
        else:
            install = INSTALL_HINT
    return {
        "MUJOCO_GL": gl,
        "renders": renders,
        "error": error,
        "egl_library": egl,
        "osmesa_library": osmesa,
        "works_with": works_with,
        "install": install,
    }


def xla_settings() -> dict:
    """The XLA and JAX settings in effect, and what `locomotion.gpu.configure` set."""
    import jax

    out = {
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
    }
    out.update({name: os.environ.get(name) for name in gpu.MEMORY_VARIABLES})
    out["gpu_settings"] = dict(gpu.APPLIED)
    return out


def policy_status() -> dict[str, dict]:
    """Whether each shipped policy loads (ONNX, metadata, MJCF hash, observation layout)."""
    from locomotion.policy import load, shipped_policies

    out = {}
    for name in shipped_policies():
        try:
            policy = load(name)
            out[name] = {"loads": True, "task": policy.task, "error": None}
        except Exception as err:  # a bug report wants every failure, not the first
            out[name] = {"loads": False, "task": None, "error": _one_line(err)}
    return out


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB"


def table(info: dict) -> str:
    """`collect()`'s dict as the aligned text `locomotion info` prints."""
    rows: list[tuple[str, str]] = [("backend", info["backend"])]
    for d in info["devices"]:
        memory = ""
        if d["memory_bytes"] is not None:
            memory = f", {_gib(d['memory_bytes'])} ({_gib(d['memory_in_use_bytes'])} in use)"
        rows.append((f"device {d['id']}", f"{d['kind']} ({d['platform']}){memory}"))
    rows.append(
        (
            "processes",
            f"{info['process_count']} (this one: {info['process_index']}), "
            f"{info['local_device_count']} local of {info['device_count']} device(s)",
        )
    )
    rows.append(("versions", ""))
    rows += [(f"  {k}", v or "not installed") for k, v in info["versions"].items()]
    r = info["rendering"]
    rows.append(("rendering", ""))
    rows.append(("  MUJOCO_GL", r["MUJOCO_GL"] or "(unset)"))
    rows.append(("  renders", "yes" if r["renders"] else f"no: {r['error']}"))
    libraries = f"EGL {r['egl_library'] or 'missing'}, OSMesa {r['osmesa_library'] or 'missing'}"
    rows.append(("  libraries", libraries))
    if not r["renders"]:
        rows.append(("  works with", r["works_with"] or "none"))
        rows.append(("  fix", r["install"]))
    x = info["xla"]
    rows.append(("xla", ""))
    rows.append(("  XLA_FLAGS", x["XLA_FLAGS"] or "(unset)"))
    precision = x["matmul_precision"]
    if precision == "default" and info["backend"] == "gpu":
        precision += " (TF32 on Ampere and newer)"
    rows.append(("  matmul precision", precision))
    rows.append(("  JAX_PLATFORMS", x["JAX_PLATFORMS"] or "(unset)"))
    rows.append(("  jax_enable_x64", str(x["jax_enable_x64"])))
    memory = [f"{k}={x[k]}" for k in gpu.MEMORY_VARIABLES if x[k] is not None]
    if info["backend"] == "gpu" and not memory:
        memory = ["(unset: JAX preallocates 75 % of GPU memory)"]
    rows.append(("  GPU memory", ", ".join(memory) or "(unset)"))
    applied = ", ".join(f"{k}={v}" for k, v in x["gpu_settings"].items())
    rows.append(("  set by locomotion", applied or "nothing"))
    rows.append(("shipped policies", "" if info["policies"] else "not checked"))
    for name, p in info["policies"].items():
        rows.append((f"  {name}", "loads" if p["loads"] else f"FAILS: {p['error']}"))
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:{width}s}{v}".rstrip() for k, v in rows)
