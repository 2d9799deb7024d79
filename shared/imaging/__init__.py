"""The imaging path both halves run: latents, generator to images, grids and PNG, devices, TorchScript."""
