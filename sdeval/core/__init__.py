"""Bottom layer: errors (each with its exit code), atomic io and sha256, config sources, versions."""
