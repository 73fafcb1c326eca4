"""Sweeps: a TOML spec -> validated trials (``spec``) -> runs on Ray (``runner``) -> one results
table (``results``); the app starts and stops them in the background (``jobs``) and draws them
(``figures``)."""
