"""The networks each architecture builds (trainer.training.architectures holds the registry)."""
