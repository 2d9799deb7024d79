"""What a finished run leaves in the store: the version's forms (TorchScript, ONNX, torch.export), its figures and
report, the encoder trained against it, and the publishing that puts them there in one step."""
