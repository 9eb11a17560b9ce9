"""HTML pages: server-rendered Jinja2, progressively enhanced with htmx."""
