"""What the trainer and the service agree on: the model zoo, the store format, latents and image grids."""
