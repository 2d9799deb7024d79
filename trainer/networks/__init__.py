"""The networks each architecture builds (trainer.architectures holds the registry)."""
