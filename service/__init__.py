"""The inference service: loads published TorchScript generators and serves PNG grids over HTTP."""
