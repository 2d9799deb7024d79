"""What a request means and what the service does with it, apart from any wire format: `generation` (a request's
latents and their images: admission, the batched forward, class requests), `found_classes` and `given_classes` (a
class found in an unconditional latent space, or given to a conditional version), `sweeps` (a sweep's rows),
`interpolation` (the path between two latents), `animation` (GIF, WebP), `uploads` (uploaded pictures into a model's
input), `scoring` (D's judgement of uploads), `projection` (an upload's latent), `rejections` (`Refused`, which each
front door translates). Used by `service.api`; uses `service.engine`; never imports the HTTP side.
"""
