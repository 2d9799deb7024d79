"""The training job: data, the training loop, TorchScript export, the seed's figures, publishing."""
