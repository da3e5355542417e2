"""The running service: app, supervisor, pipeline, analysis pool, scheduler loop."""
