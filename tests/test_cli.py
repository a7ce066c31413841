"""The `locomotion` command end to end, and its one-line errors for user mistakes."""

import json
import subprocess
import sys

import pytest

from locomotion.cli import main
from locomotion.policy import SHIPPED_DIR


def run_cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "locomotion.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_list_prints_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quadruped_joystick" in out and "pendulum_swingup" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "walk_on_air"], "unknown task 'walk_on_air'"),
        (["fly"], "unknown command 'fly'"),
        (["train", "--resume", "/nonexistent/run"], "has no config.json"),
        (["train", "pendulum_swingup", "--run.init-from", "/no/run"], "init_from: no checkpoint"),
        (["train", "pendulum_swingup", "--restart-envs"], "only applies with --resume"),
        (["train", "--resume", "OLD_RUN"], "RunConfig fields missing: ['init_from']"),
        (["eval", "quadruped_joystick", "--terrain", "all"], "need a terrain task"),
        (["eval", "quadruped_joystick", "--level", "5"], "quadruped_joystick has no terrain"),
        (["eval", "quadruped_joystick", "--sweep", "latency"], "--sweep takes NAME=V1,V2"),
        (["eval", "quadruped_joystick", "--sweep", "scene=1,2"], "not latency, gain_error or"),
        (["eval", "quadruped_joystick", "--sweep", "latency=0.5"], "whole control steps"),
        (
            ["eval", "quadruped_joystick", "--sweep", "latency=0,1", "--compare-mjx"],
            "does not combine with --sweep",
        ),
        (["video", "quadruped_joystick", "-o", "walk.gif"], "must end in .mp4 (a video) or .png"),
        (["video", "quadruped_joystick", "-o", "a.png", "--level", "2"], "has no terrain"),
        (["video", "quadruped_joystick", "-o", "a.mp4", "--env.nope", "1"], "nope"),
    ],
)
def test_user_errors_are_one_line(args, message, capsys, tmp_path):
    if "OLD_RUN" in args:  # a run directory written before run.init_from existed
        config = json.loads(
            (SHIPPED_DIR / "quadruped_joystick" / "training_config.json").read_text()
        )
        del config["run"]["init_from"]
        (tmp_path / "config.json").write_text(json.dumps(config))
        args = [str(tmp_path) if a == "OLD_RUN" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_invalid_config_value_is_one_line():
    result = run_cli("train", "pendulum_swingup", "--ppo.gamma", "1.5", timeout=300)
    assert result.returncode == 2
    assert "gamma must be in (0, 1]" in result.stderr and "Traceback" not in result.stderr


def test_eval_env_overrides_change_only_the_named_settings(capsys):
    """`locomotion eval POLICY --env.FIELD VALUE`: the policy's settings, evaluation defaults
    (nominal physics, clean observations), then the user's changes; bad ones are one line."""
    from locomotion.cli import UserError, _env_overrides
    from locomotion.policy import load
    from locomotion.replay import eval_config

    base = eval_config(load("hand_reorient"))
    assert not base.randomize and base.obs_noise == 0.0
    changed = _env_overrides(base, ["--env.randomize", "true", "--env.success-threshold", "0.2"])
    assert changed.randomize and changed.success_threshold == 0.2
    assert changed.obs_noise == 0.0 and changed.rewards == base.rewards
    assert _env_overrides(base, []) is base
    with pytest.raises(UserError, match="unknown option '--episode'"):
        _env_overrides(base, ["--episode", "3"])
    assert main(["eval", "hand_reorient", "--env.upright-goals", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "upright_goals" in err and len(err.splitlines()) == 1


def test_eval_sweep_tables_and_plots_one_perturbation(capsys, tmp_path):
    """`locomotion eval POLICY --sweep latency=0,2 --plot F.png --json F.json`: one native
    evaluation per value (the same seeded episode), a row each in the JSON, and a PNG; bad
    sweeps are one-line errors (above)."""
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = ["--episodes", "1", "--seconds", "1", "--json", str(out), "--plot", str(png)]
    assert main(["eval", "quadruped_joystick", "--sweep", "latency=0,2", *args]) == 0
    sweep = json.loads(out.read_text())
    assert sweep["sweep"] == "latency" and [r["value"] for r in sweep["rows"]] == [0, 2]
    errors = [r["result"]["lin_vel_error"] for r in sweep["rows"]]
    assert errors[0] != errors[1]  # the same episode, its actions 40 ms late: another walk
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_terrain_rows_show_mjx_beside_native_with_compare_mjx():
    from locomotion.cli import _terrain_row

    native = dict(crossed_mean=0.55, fell_on_tile_mean=0.4, fall_rate=0.45, lin_vel_error=0.299)
    native["crossed_ci95"] = [0.342, 0.742]
    row = dict(native, terrain_type="stairs_up", level=5, tile="rise 6.4 cm")
    head, line = _terrain_row(row, header=True).splitlines()
    assert head.split()[3:] == ["crossed", "95%", "fell_tile", "fell", "vel_err"]
    assert line.split()[-5:] == ["0.55", "0.34-0.74", "0.40", "0.45", "0.299"]
    mjx = dict(crossed_mean=0.5, fell_on_tile_mean=0.0, fall_rate=0.1, lin_vel_error=0.2)
    row["mjx"] = dict(mjx, crossed_ci95=[0.3, 0.7])
    head, line = _terrain_row(row, header=True).splitlines()
    mjx_head = ["mjx_crossed", "mjx_95%", "mjx_fell_tile", "mjx_fell", "mjx_vel_err"]
    assert head.split()[-5:] == mjx_head
    assert line.split()[-10:] == [
        *["0.55", "0.34-0.74", "0.40", "0.45", "0.299"],
        *["0.50", "0.30-0.70", "0.00", "0.10", "0.200"],
    ]
    assert _terrain_row(row, header=False) == line


def test_video_pins_terrain_type_and_level_like_eval():
    """`locomotion video --terrain TYPE --level L` sets up the rollout as `locomotion eval`
    pins its rows; a type the terrain lacks or a level outside it is refused."""
    from types import SimpleNamespace

    from locomotion.cli import UserError, _pin_terrain
    from locomotion.tasks.quadruped_rough import QuadrupedRoughConfig

    policy = SimpleNamespace(task="quadruped_rough")
    config = QuadrupedRoughConfig()
    pinned = _pin_terrain(config, policy, "stairs_down", 4)
    assert (pinned.terrain_type, pinned.level) == ("stairs_down", 4)
    assert _pin_terrain(config, policy, None, 2).terrain_type is None
    for kind, level, message in (("lava", None, "types are flat"), (None, 10, "levels are 0")):
        with pytest.raises(UserError, match=message):
            _pin_terrain(config, policy, kind, level)
