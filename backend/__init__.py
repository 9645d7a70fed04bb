"""SimpSON Erase backend: daemon, pipeline, engines and models."""
