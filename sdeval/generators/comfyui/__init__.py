"""The ComfyUI client: transport, prompt tracking, errors."""
