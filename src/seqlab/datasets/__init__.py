"""Small real datasets bundled for the default run (no downloads at run time).

- ``airpassengers``: monthly international airline passengers (thousands), 1949-1960, 144 points
  (Box & Jenkins, 1976; public domain).
"""
