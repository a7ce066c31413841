"""Render a policy's native-MuJoCo rollout to MP4 (headless) and plot learning curves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from locomotion.policy import Policy


class RenderError(RuntimeError):
    """Headless OpenGL is unavailable; the message names the fix."""


def make_renderer(model, width: int, height: int):
    import mujoco

    offw, offh = int(model.vis.global_.offwidth), int(model.vis.global_.offheight)
    if width > offw or height > offh:
        raise ValueError(
            f"video size {width}x{height} exceeds the model's offscreen buffer {offw}x{offh}"
        )
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as err:  # the GL backends raise assorted types
        gl = os.environ.get("MUJOCO_GL", "(unset)")
        raise RenderError(
            f"cannot create an OpenGL context (MUJOCO_GL={gl}: {err}). Install EGL "
            "(Debian: apt-get install libegl1) or OSMesa (apt-get install libosmesa6) and set "
            "MUJOCO_GL=egl or MUJOCO_GL=osmesa before starting Python"
        ) from None


def make_camera(model, name: str | None):
    """The named scene camera, or a camera tracking body 1 (a legged robot's floating base)."""
    import mujoco

    if name is not None:
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
            raise ValueError(f"the scene has no camera {name!r}")
        return name
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = model.body(1).id
    cam.distance, cam.elevation, cam.azimuth = 1.2, -20.0, 135.0
    return cam


def render_policy(
    policy: Policy,
    out: str | Path,
    seconds: float = 5.0,
    command=None,
    width: int = 640,
    height: int = 360,
    seed: int = 0,
    config=None,
) -> dict:
    """Write an MP4 of one native rollout, or with a `.png` path one still frame: the state
    after `seconds` (only that frame is rendered: a software renderer draws a terrain's large
    heightfield slowly). `config` replaces the evaluation config of the task
    (`replay.eval_config`), e.g. pinned to a terrain type and level.

    The camera is the scene camera the task names in `VIDEO_CAMERA` (a fixed view, e.g. of a
    hand's palm), else one that follows the robot's floating base.
    """
    import imageio_ffmpeg
    import mediapy

    from locomotion import registry
    from locomotion.replay import evaluate_native

    frames: list[np.ndarray] = []
    state = {}
    camera_name = getattr(registry.entry(policy.task).env_class, "VIDEO_CAMERA", None)

    out = Path(out)
    still = out.suffix.lower() == ".png"
    last = int(round(seconds / policy.meta["control_dt"]))  # on_frame's call after that step

    def on_frame(model, data):
        state["calls"] = state.get("calls", -1) + 1
        if still and state["calls"] != last:
            return
        if "renderer" not in state:
            state["renderer"] = make_renderer(model, width, height)
            state["camera"] = make_camera(model, camera_name)
        renderer = state["renderer"]
        renderer.update_scene(data, camera=state["camera"])
        frames.append(renderer.render().copy())

    metrics = evaluate_native(
        policy,
        episodes=1,
        seconds=seconds,
        seed=seed,
        command=command,
        on_frame=on_frame,
        stop_on_fall=False,
        config=config,
    )
    if "renderer" in state:
        state["renderer"].close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if still:
        mediapy.write_image(out, frames[-1])
        return metrics
    mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    fps = int(round(1.0 / policy.meta["control_dt"]))
    mediapy.write_video(out, frames[1:], fps=fps)  # frames[0] is the initial state
    return metrics


def curve(rows: list[dict], key: str) -> np.ndarray:
    """The values of metric `key` over the rows: NaN where a row lacks it, and for episode
    metrics where no episode ended in that iteration (they report 0 then); a real 0 stays 0."""
    values = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    if key.startswith("episode/"):
        counts = np.array([r.get("episode/count", 1) for r in rows])
        values[counts == 0] = np.nan
    return values


def plot_learning_curves(
    rows: list[dict], out: str | Path, title: str = "", extra_panels=()
) -> None:
    """PNG of episode return and the main task metrics against environment steps.

    `extra_panels`: (metric, label) pairs of task metrics to plot too (those the task reports
    in evaluation); metrics absent from the log are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "perf/iteration" in r]
    steps = np.array([r["env_steps"] for r in rows]) / 1e6
    panels = [
        ("episode/return", "episode return"),
        ("tracking/lin_vel_error", "lin. velocity error [m/s]"),
    ]
    panels += [p for p in extra_panels if p[0] not in dict(panels)]
    panels.append(("episode/length", "episode length [steps]"))
    panels = [(k, label) for k, label in panels if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        ax.plot(steps, curve(rows, key), lw=1.2)
        ax.set_xlabel("environment steps [M]")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
