"""The training core: a run's settings and data, the architectures and their networks, the loss, the step and the
loop, the state a run resumes from."""
