"""Render README.md from nbs/index.ipynb (executed in memory).

nbdev's own `nbdev-readme` needs the Quarto binary, which this project cannot download; nbconvert
gives the same GitHub-flavoured Markdown from the executed notebook.
"""
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parents[1]
nb = nbformat.read(root / "nbs" / "index.ipynb", as_version=4)
from trading.pipeline import quiet_kernel_manager  # IPC sockets: no "running over TCP without encryption" warning

with tempfile.TemporaryDirectory() as ipc:
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root / "nbs")}},
                   kernel_manager_class=quiet_kernel_manager(ipc)).execute()
# drop nbdev directives and hidden cells, as nbdev's renderer would
nb.cells = [c for c in nb.cells if not re.search(r"^#\|\s*hide\b", c.source, re.M)]
for c in nb.cells:
    c.source = re.sub(r"^#\|.*\n?", "", c.source, flags=re.M)
    # one block per stream: how a kernel chunks prints depends on timing (a cold numba cache splits them)
    outs = []
    for o in c.get("outputs", []):
        if outs and o.get("output_type") == "stream" and outs[-1].get("output_type") == "stream" and outs[-1].name == o.name:
            outs[-1].text += o.text
        else:
            outs.append(o)
    if "outputs" in c: c.outputs = outs
    for o in c.get("outputs", []):
        o.get("data", {}).pop("text/html", None)  # Markdown readers show the plain-text table
md, _ = MarkdownExporter().from_notebook_node(nb)
md = re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"
header = "<!-- Generated from nbs/index.ipynb by tools/readme.py (make readme); edit the notebook, not this file. -->\n\n"
out = root / "README.md"
if len(sys.argv) > 1 and sys.argv[1] == "--check":
    sys.exit(0 if out.exists() and out.read_text() == header + md else "README.md is out of date with nbs/index.ipynb: run `make readme`")
out.write_text(header + md)
print(f"wrote {out}")
