"""Ahead-of-time compilation for a target accelerator topology, without its devices.

`topology`: named TPU slices (`v5p-64`, `v6e-128`, ...) as deviceless jax devices, with each
chip's published HBM, bf16 peak and HBM bandwidth. `programs`: every device program a training
run compiles (SFT step, GRPO step, sampler prefill and decode), built from abstract arrays only.
`report`: compile them, read XLA's own memory and cost analysis, and say what fits.
"""
