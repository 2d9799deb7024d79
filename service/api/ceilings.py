"""The API's hard ceilings: the request schema's bounds, and the highest value each setting accepts (the settings
may lower them; `service.api.limits` rewrites the published schema to the settings)."""

IMAGES_CEILING = 4096  # images in one response
SCALE_CEILING = 64  # integer upscaling factor
PADDING_CEILING = 64  # pixels between grid cells
PROJECT_STEPS_CEILING = 5000  # optimisation steps of one projection
