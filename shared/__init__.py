"""What the trainer and the service both use: `store` (the contract between them: layout, manifest,
atomic writes) and `imaging` (latents, generating, grids, PNG, devices, TorchScript loading)."""
