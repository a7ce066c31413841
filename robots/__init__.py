"""Robot models (MJCF) and the facts tasks need about them (`RobotSpec`)."""

from locomotion.robots.hand import HAND
from locomotion.robots.quadruped import QUADRUPED
from locomotion.robots.spec import RobotSpec, load_model

ROBOTS: dict[str, RobotSpec] = {QUADRUPED.name: QUADRUPED, HAND.name: HAND}

__all__ = ["ROBOTS", "HAND", "QUADRUPED", "RobotSpec", "load_model"]
