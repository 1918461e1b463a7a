"""Build `.dvc/plots/offline.html`: DVC's plot page with Vega, Vega-Lite and Vega-Embed inlined.

`dvc plots show` writes a page that loads those three scripts from a CDN, so offline (this project's normal case) it is
blank. DVC fills a custom template by plain text replacement of `{plot_divs}` (and `{scripts}`, which this template
leaves out: it holds the CDN tags), so the libraries can sit in the page itself. `.dvc/config` points
`plots.html_template` here. The versions are the ones dvc-render itself asks for; rebuild with
`python tools/dvc_plots_template.py` (needs `npm`, which fetches the packages from the npm registry).
Vega, Vega-Lite and Vega-Embed are BSD-3-Clause licensed (c) the University of Washington Interactive Data Lab.
"""
import hashlib
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": ("5.20.2", "build/vega.min.js"), "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
            "vega-embed": ("6.18.2", "build/vega-embed.min.js")}
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- {provenance} -->
{inlined}
    <script type="text/javascript">
        // DVC's plot divs call vegaEmbed(el, spec): draw as SVG (crisp, text selectable, legends testable)
        const dvcEmbed = vegaEmbed;
        window.vegaEmbed = (el, spec, options) => dvcEmbed(el, spec, Object.assign({{renderer: "svg"}}, options));
    </script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main() -> None:
    scripts, provenance = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, member) in PACKAGES.items():
            subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=tmp, check=True, capture_output=True)
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as tar:
                js = tar.extractfile(f"package/{member}").read().decode()
            assert "</script" not in js, f"{name}: a closing script tag would end the inline script early"
            provenance.append(f"{name}@{version} {member} sha256:{hashlib.sha256(js.encode()).hexdigest()[:16]}")
            scripts.append(f"    <script type=\"text/javascript\">/* {name}@{version}, BSD-3-Clause */\n{js}\n    </script>")
    page = PAGE.format(refresh_tag="{refresh_tag}", provenance="; ".join(provenance), inlined="\n".join(scripts))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(page)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {'; '.join(provenance)}")


if __name__ == "__main__":
    main()
