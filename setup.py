"""The one thing pyproject.toml does not declare: the optional C extensions.

``worker._fastpng`` undoes PNG row filters and computes the ink map in C
(``worker/fastpng.py``); ``worker._features`` computes the model's features
(deskew, HOG, pooled pixels) in one pass per image (``worker/features.py``);
``worker._euler`` counts the pieces less holes of every drawing's work image
(``worker/preprocess.py``). All are optional: where no C compiler is found the
package installs without them, and libspng and numpy do the same work, about
0.1 ms an image slower for a PNG, 18 us for the features and 30 us for the count.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("worker._fastpng", ["worker/_fastpng.c"], optional=True, extra_compile_args=["-O3"]),
        Extension("worker._features", ["worker/_features.c"], optional=True, extra_compile_args=["-O3"]),
        Extension("worker._euler", ["worker/_euler.c"], optional=True, extra_compile_args=["-O3"]),
    ],
)
