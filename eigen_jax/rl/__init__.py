"""RL: rollouts, checker rewards, group advantages, dynamic filtering, GRPO."""
