"""Build the native core: every native/*.pyx becomes runtime._native.<name>.

MLRT_CYTHON_DEBUG=1 turns bounds and initialization checks back on (one CI job
runs the kernel tests that way).
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("MLRT_CYTHON_DEBUG", "0") != "0"

# The headers every kernel may include: a change to one rebuilds the extensions.
HEADERS = [str(h) for h in sorted(Path("native").glob("*.h")) + sorted(Path("native").glob("*.pxd"))]

extensions = [
    Extension(
        f"runtime._native.{pyx.stem}",
        [str(pyx)],
        depends=HEADERS,
        extra_compile_args=["-O3"] if os.name != "nt" else [],
    )
    for pyx in sorted(Path("native").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["native"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": False,
            "initializedcheck": DEBUG,
            "cdivision": True,
        },
    ),
)
