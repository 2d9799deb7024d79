"""latentlab's Python client: the service's routes as methods, images back as PIL and NumPy.

    from latentlab import Client
    with Client("http://127.0.0.1:8000") as client:
        sweep = client.sweep("dcgan", scale=3)      # the study's five-coordinate sweep
        sweep.image                                  # the grid, a PIL image
        sweep.images.shape                           # (40, 28, 28): every image, split out exactly

It needs httpx, Pillow and NumPy only (`pip install 'latentlab[client]'`), never torch or the server.
"""
from latentlab.client import AsyncClient, ClassLatents, Client, Directions, History, Projection
from latentlab.errors import (
                              APIConnectionError,
                              APIStatusError,
                              APITimeoutError,
                              AuthenticationError,
                              BadRequestError,
                              LatentlabError,
                              NotFoundError,
                              PayloadTooLargeError,
                              ServiceUnavailableError,
                              UnprocessableEntityError,
)
from latentlab.results import ImageResult
from latentlab.retry import RetryPolicy

__all__ = ["Client", "AsyncClient", "ImageResult", "Directions", "History", "ClassLatents", "Projection", "RetryPolicy",
           "LatentlabError", "APIConnectionError", "APITimeoutError", "APIStatusError", "BadRequestError",
           "AuthenticationError", "NotFoundError", "PayloadTooLargeError", "UnprocessableEntityError",
           "ServiceUnavailableError"]
