"""The Solo-12-class quadruped (see quadruped.xml for the published figures it follows)."""

from locomotion.robots.spec import RobotSpec

_LEGS = ("FL", "FR", "HL", "HR")
_JOINTS = tuple(f"{leg}_{j}" for leg in _LEGS for j in ("HAA", "HFE", "KFE"))

QUADRUPED = RobotSpec(
    name="quadruped",
    model_dir="quadruped",
    scenes=(("flat", "scene_flat.xml"), ("rough", "scene_rough.xml")),
    joint_names=_JOINTS,
    actuator_names=_JOINTS,
    default_pose=(0.0, 0.7, -1.4) * 4,
    kp=6.0,
    kd=0.25,
    torque_limit=3.0,
    velocity_limit=16.0,
    joint_lower=(-0.9, -1.4, -2.8) * 4,
    joint_upper=(0.9, 2.4, -0.05) * 4,
    root_body="base",
    imu_site="imu",
    foot_sites=tuple(f"{leg}_foot" for leg in _LEGS),
    foot_geoms=tuple(f"{leg}_foot" for leg in _LEGS),
    termination_geoms=("base", *(f"{leg}_knee" for leg in _LEGS)),
    sensors=(
        "gyro",
        "accelerometer",
        "orientation",
        "local_linvel",
        *(f"{leg}_touch" for leg in _LEGS),
    ),
)
