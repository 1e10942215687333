"""The one thing pyproject.toml does not declare: the optional C extensions.

``worker._fastpng`` undoes PNG row filters and computes the ink map in C
(``worker/fastpng.py``); ``worker._features`` computes the model's features
(deskew, HOG, pooled pixels) in one pass per image (``worker/features.py``).
Both are optional: where no C compiler is found the package installs without
them, and libspng and numpy do the same work, about 0.1 ms an image slower
for a PNG and 18 us for the features.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("worker._fastpng", ["worker/_fastpng.c"], optional=True, extra_compile_args=["-O3"]),
        Extension("worker._features", ["worker/_features.c"], optional=True, extra_compile_args=["-O3"]),
    ],
)
