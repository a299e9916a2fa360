"""The smallest transfer run that still exercises every phase (MuJoCo on both sides, a tiny
model, a few steps); shared by test_transfer.py and test_sweep.py (one seed a job there)."""

TINY = ["task=push_cube", "source_backend=mujoco", "target_backend=mujoco", "demos=2", "seeds=1",
        "eval_episodes=2", "pretrain.steps=60", "pretrain.seed_steps=40", "pretrain.eval_every=60",
        "pretrain.eval_episodes=1", "pretrain.num_demos=2", "pretrain.agent.batch_size=16",
        "pretrain.model.latent_dim=32", "pretrain.model.enc_dim=32", "pretrain.model.mlp_dim=32",
        "finetune.steps=5", "finetune.agent.batch_size=16", "scratch_steps=5", "scratch.agent.batch_size=16",
        "bc.steps=20", "bc.hidden_dim=32", "bc_finetune_steps=10", "wm_offline_steps=5"]
