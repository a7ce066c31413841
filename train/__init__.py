"""PPO on the environment interface; knows nothing about any particular task."""
