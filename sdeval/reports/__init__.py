"""Render a result folder: HTML (jinja2 templates), JUnit XML, Markdown job summary, plots. Filled by the reports issue."""
