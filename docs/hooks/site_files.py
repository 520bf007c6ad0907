"""MkDocs hook: bring files that live outside ``docs/`` into the site without copying them into the repository.

The benchmark plots are written by ``python -m benchmarks`` to ``benchmarks/results/`` and the notebooks are
committed under ``notebooks/`` (where users look for them); both stay where they are. ``on_files`` adds them
to MkDocs' file collection as files whose source folder is the repository root, served at
``benchmarks/results/<name>.png`` and ``notebooks/<name>.py``. Because they are real entries of the
collection, ``mkdocs build --strict`` validates links and nav entries pointing at them like any page in
``docs/`` (a missing plot fails the build), no symlinks or copies are needed, and mkdocs-jupyter (which runs
after this hook, see the priority) renders the notebooks.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

# (folder relative to the repository root, glob) -> served under the same relative path
EXTERNAL = (("benchmarks/results", "*.png"), ("notebooks", "*.py"))
# plots of the reduced "smoke" runs are gitignored, so they are not published even when present locally
SKIP_SUFFIX = "_smoke.png"


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns notebooks into pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = Path(config.config_file_path).resolve().parent
    for folder, pattern in EXTERNAL:
        for path in sorted((root / folder).glob(pattern)):
            if path.name.endswith(SKIP_SUFFIX) or path.name.startswith("_"):
                continue
            uri = f"{folder}/{path.name}"
            if files.get_file_from_path(uri) is None:
                # a File rooted at the repository (not File.generated): mkdocs-jupyter's wrapper reads the
                # notebook through src_dir, which generated files leave unset
                files.append(File(uri, src_dir=str(root), dest_dir=config.site_dir,
                                  use_directory_urls=config.use_directory_urls))
    return files
