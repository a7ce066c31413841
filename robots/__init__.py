"""Robot models (MJCF) and the facts tasks need about them (`RobotSpec`)."""

from locomotion.robots.spec import RobotSpec, load_model
from locomotion.robots.quadruped import QUADRUPED

ROBOTS: dict[str, RobotSpec] = {QUADRUPED.name: QUADRUPED}

__all__ = ["ROBOTS", "QUADRUPED", "RobotSpec", "load_model"]
