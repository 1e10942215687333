"""The one thing pyproject.toml does not declare: the optional C extension.

``worker._fastpng`` undoes PNG row filters and computes the ink map in C
(``worker/fastpng.py``). It is optional: where no C compiler is found the
package installs without it, and libspng and numpy do the same work, about
0.1 ms an image slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("worker._fastpng", ["worker/_fastpng.c"], optional=True, extra_compile_args=["-O3"]),
    ],
)
