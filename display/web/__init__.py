"""The read-only web page of a node: every room and panel at a glance, live.

:mod:`.server` (HTTP, routes, token, Content-Security-Policy), :mod:`.hub` (Server-Sent Events
from the node's hooks), :mod:`.document` (what is shown: the redacted status document, the page's
words, Prometheus text); ``static/`` holds the pages, CSS and JavaScript (package data, no build
step, nothing from the internet).
"""
