"""Clients of image generators: ComfyUI (HTTP, websocket, errors) and AUTOMATIC1111."""
