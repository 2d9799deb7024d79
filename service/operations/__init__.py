"""What the service does with images, apart from HTTP: `generation` (images from the engine: admission, the
batched forward, class requests), `classes` (classes by name, truncation, class candidates), `interpolation`
(slerp, lerp), `animation` (GIF, WebP), `uploads` (uploaded pictures into a model's input), `rejections` (the
422s that no JSON schema can state, in FastAPI's error shape). Used by `service.api`'s routes; uses
`service.engine`; never imports the HTTP side.
"""
