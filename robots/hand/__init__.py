"""The LEAP-hand-class 16-DoF hand and its cube scene (hand.xml names the figures it follows)."""

from locomotion.robots.spec import RobotSpec

FINGERS = ("index", "middle", "ring", "thumb")
_JOINTS = (
    *(f"{f}_{j}" for f in FINGERS[:3] for j in ("mcp_flex", "mcp_side", "pip", "dip")),
    *(f"thumb_{j}" for j in ("cmc_flex", "cmc_side", "mcp", "ip")),
)

HAND = RobotSpec(
    name="hand",
    model_dir="hand",
    scenes=(("cube", "scene_cube.xml"),),
    joint_names=_JOINTS,
    actuator_names=_JOINTS,
    # Fingers curled over the cube's top edge, tips resting on its top face (keyframe "home").
    default_pose=(
        *(1.3, 0.2, 1.0, 0.93),  # index, turned 0.2 rad towards the middle finger
        *(1.3, 0.0, 1.0, 0.96),  # middle
        *(1.3, -0.2, 1.0, 0.93),  # ring
        *(1.3, -0.1, 1.0, 0.96),  # thumb
    ),
    kp=3.0,
    kd=0.1,
    torque_limit=0.5,  # about half the XC330-M288-T's 0.93 N*m stall torque at 5 V
    velocity_limit=8.5,  # XC330-M288-T no-load speed, 81 rpm at 5 V
    joint_lower=(-0.3, -0.5, -0.5, -0.35) * 3 + (-0.35, -0.5, -0.5, -0.35),
    joint_upper=(2.2, 0.5, 1.9, 2.0) * 3 + (2.1, 1.0, 1.9, 2.0),
    root_body="palm",
    fingertip_sites=tuple(f"{f}_tip" for f in FINGERS),
    sensors=tuple(f"{f}_touch" for f in FINGERS),
    floor_geom="floor",
    object_body="cube",
)
