"""Serving a class: the app server, its deep links and images, and the multi-session benchmark."""
