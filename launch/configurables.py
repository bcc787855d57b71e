"""Imports every module that registers gin configurables, so gin files can bind them."""

# isort: off
import launch.pipeline  # noqa: F401  run_pipeline and the stages
import launch.pretrain_stages  # noqa: F401  pretrain_data_stage, base_model_stage
import eigen_jax.chat.views  # noqa: F401  agent_prompt
import eigen_jax.data.pipeline  # noqa: F401  make_sft_dataset
import eigen_jax.train.model_init  # noqa: F401  init_model
import eigen_jax.train.optimizer  # noqa: F401  make_schedule, make_optimizer
import eigen_jax.train.sft  # noqa: F401  run_sft
import eigen_jax.eval.evaluate  # noqa: F401  evaluate_checkpoint
import eigen_jax.rl.grpo  # noqa: F401  run_grpo
import eigen_jax.rl.rollout  # noqa: F401  RolloutConfig
import eigen_jax.rl.task_source  # noqa: F401  TaskSource
import eigen_jax.rl.user_sim  # noqa: F401  make_user_simulator
import eigen_jax.rl.config  # noqa: F401  GRPOConfig
import eigen_jax.sampling.config  # noqa: F401  SamplerConfig
