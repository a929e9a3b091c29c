"""Build the HTML docs from the notebooks, offline, with tools from PyPI (nbclient, nbconvert).

    python docs/build.py [--out docs/_site] [--no-execute]

Each notebook in nbs/ is executed in a fresh kernel (so the docs show real output and a broken example fails the
build), cells marked `#| hide` are dropped, `#|` directives are stripped, and the page is written as HTML named the
way nbdev names it (`01_config.ipynb` -> `config.html`). `cli_reference.html` is generated from `mlops-nb --help`.
Exits non-zero, naming the notebook and cell, when a notebook fails.
"""
import argparse, html, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'


def page_name(nb: Path) -> str:
    "nbdev's page name: numeric prefix stripped, `.html`."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower()) + '.html'


def directives(cell) -> set:
    lines = cell.source.splitlines()
    return {l[2:].strip().split()[0] for l in lines if l.startswith('#|') and l[2:].strip()}


def for_docs(nb):
    "Drop hidden and `default_exp` cells; strip `#|` directive lines from the rest."
    keep = []
    for c in nb.cells:
        d = directives(c)
        if c.cell_type == 'code' and (d & {'hide', 'exporti'} or d == {'default_exp'}): continue
        if c.cell_type == 'code':
            c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip('\n')
        keep.append(c)
    nb.cells = keep
    return nb


def nav(pages, current):
    links = ' · '.join(f'<b>{html.escape(t)}</b>' if p == current else f'<a href="{p}">{html.escape(t)}</a>'
                       for p, t in pages)
    return (f'<nav style="font-family:sans-serif;padding:.6em 1em;border-bottom:1px solid #ddd;'
            f'background:#fafafa">mlops_nb docs: {links}</nav>')


def cli_reference():
    "The `--help` of `mlops-nb` and of each command, as one HTML page body."
    from click.testing import CliRunner
    from mlops_nb.cli import cli
    parts = ['<h1>CLI reference</h1>', '<p>Generated from <code>mlops-nb --help</code>.</p>']
    for name in [None, *sorted(cli.commands)]:
        args = ([name] if name else []) + ['--help']
        out = CliRunner().invoke(cli, args, prog_name='mlops-nb', terminal_width=100).output
        parts.append(f'<h2 id="{name or "mlops-nb"}"><code>mlops-nb {name or ""}</code></h2><pre>{html.escape(out)}</pre>')
    return '\n'.join(parts)


def build(out: Path, execute=True, timeout=600):
    import nbformat
    from nbconvert import HTMLExporter
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    out.mkdir(parents=True, exist_ok=True)
    nbs = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    titles = {}
    for p in nbs:
        first = nbformat.read(p, as_version=4).cells[0].source.splitlines()[0]
        titles[p] = first.lstrip('# ').strip() or p.stem
    pages = [(page_name(p), titles[p]) for p in sorted(nbs, key=lambda p: p.name != 'index.ipynb')]
    pages.append(('cli_reference.html', 'CLI reference'))
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    env = {**os.environ, 'IN_TEST': '1'}  # nbdev_export() cells do nothing while docs build
    for p in nbs:
        t0 = time.perf_counter()
        nb = nbformat.read(p, as_version=4)
        if execute:
            old = dict(os.environ); os.environ.update(env)
            try: NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
            except CellExecutionError as e:
                sys.exit(f"docs: {p.relative_to(ROOT)} failed while executing:\n{e}")
            finally: os.environ.clear(); os.environ.update(old)
        body, _ = exporter.from_notebook_node(for_docs(nb), resources={'metadata': {'name': titles[p]}})
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav(pages, page_name(p)), body, count=1)
        (out/page_name(p)).write_text(body, encoding='utf-8')
        print(f"docs: {p.name} -> {page_name(p)} ({time.perf_counter()-t0:.1f} s)")
    ref = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>CLI reference</title></head><body>'
           f'{nav(pages, "cli_reference.html")}<main style="font-family:sans-serif;padding:1em">{cli_reference()}</main></body></html>')
    (out/'cli_reference.html').write_text(ref, encoding='utf-8')
    print(f"docs: {len(pages)} pages in {out}")
    return [out/p for p, _ in pages]


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT/'docs'/'_site', help="Output folder [docs/_site]")
    ap.add_argument('--no-execute', action='store_true', help="Render the notebooks as saved, without running them")
    a = ap.parse_args()
    build(a.out, execute=not a.no_execute)
