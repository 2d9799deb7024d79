"""Sample quality: the FashionMNIST feature classifier (`classifier`), the metrics on its features
(`metrics`: FID, KID, precision/recall, class coverage) and the command that measures a published
version and records the numbers in its manifest (`evaluate`, run as `python -m trainer.evaluate`)."""
