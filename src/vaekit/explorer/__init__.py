"""The explorer: `vaekit serve RUN [RUN ...]`, a local page to look at trained models through the models
themselves (api.py: the requests; server.py: HTTP; page.html: the page, script and style inside)."""
