"""Training: the shared loop (restore, step, metrics, save, export), agent and user-simulator
SFT, optimizer and schedule, checkpoints, FLOP counts."""
