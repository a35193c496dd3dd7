from glob import glob

from setuptools import find_packages, setup

# configs/ and jobtemplates/ sit beside the package in a checkout; a wheel puts them
# under <prefix>/share/megamixer/ (found by pipeline.resources.shipped_dir)
SHIPPED = [(f"share/megamixer/{name}", sorted(glob(f"{name}/*")))
           for name in ("configs", "jobtemplates")]

setup(
    name="megamixer",
    version="0.1.0",
    description="Chunked multi-epoch galaxy shape and flux fitting for imaging surveys",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "numba>=0.57",
        "fitsio>=1.2",
        "pyyaml>=6.0",
        "galsim>=2.4",
        "matplotlib>=3.6",
        "tqdm>=4.60",
    ],
    extras_require={
        "dask": ["dask>=2023.1", "distributed>=2023.1", "dask-jobqueue>=0.8"],
        "test": ["pytest>=7", "pytest-timeout>=2.1", "wheel"],
        # the documentation site (docs/, built by tests/test_docs.py with -W)
        "docs": ["sphinx>=7.2", "numpydoc>=1.6"],
    },
    entry_points={
        "console_scripts": [
            "ngmixit=pipeline.cli.ngmixit:entry",
            "megamixit=pipeline.cli.megamixit:entry",
            "ngmixer-meds-make-nbrs-data=pipeline.cli.nbrs:entry",
            "ngmixer-sim=pipeline.cli.sim:entry",
            "ngmixer-meds-mof-nbrs-correct=pipeline.cli.mof_correct:entry",
            "megamixer-demo=pipeline.demo:entry",
        ],
    },
    include_package_data=True,
    data_files=SHIPPED,
)
