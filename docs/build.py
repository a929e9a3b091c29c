"""Build the HTML docs from the notebooks and guides, offline, with tools from PyPI (nbclient, nbconvert, mistune).

    python docs/build.py [--out docs/_site] [--no-execute | --execute NOTEBOOK ...]

Each notebook in nbs/ (the API pages, and the tutorial) is executed in a fresh kernel, so the docs show real output
and a broken example fails the build; cells marked `#| hide` are dropped, `#|` directives are stripped, and the page
is named the way nbdev names it (`01_config.ipynb` -> `config.html`). The guides in docs/guides/*.md become
`getting_started.html` and `guide_<name>.html`, with the screenshots of docs/screenshots/. `cli_reference.html` is
generated from `mlops-nb --help`. `--execute tutorial.ipynb` runs that notebook only and renders the others as saved
(the test suite does this: every notebook runs under `nbdev-test` in tests/test_notebooks.py, so running them all
again here would only double the suite's longest part); `--no-execute` runs none.

Before anything runs, the guides and the notebooks' prose are checked against the code: every `mlops-nb` command and
option, every `%mlops` verb and option and every `mn.<name>` they show must exist, and every relative link and image
must lead to a page or file of the site. Exits non-zero naming the page and the line (or the notebook and the cell).
"""
import argparse, difflib, html, os, re, shlex, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
GUIDES = ROOT/'docs'/'guides'
SCREENSHOTS = ROOT/'docs'/'screenshots'
# The order of the guides in the navigation; a guide not listed here comes last.
GUIDE_ORDER = ['getting_started', 'tracking', 'reproduce', 'pipelines', 'drift_and_quota', 'promotion', 'architecture']


def notebooks() -> list:
    "The notebooks of nbs/ and its layer folders, in reading order (folder, then number)."
    return sorted((p for p in NBS.rglob('*.ipynb') if not p.name.startswith('_') and '.ipynb_checkpoints' not in p.parts),
                  key=lambda p: p.relative_to(NBS).parts)


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


def guide_page(md: Path) -> str:
    return 'getting_started.html' if md.stem == 'getting_started' else f'guide_{md.stem}.html'


def guide_files():
    order = {n: i for i, n in enumerate(GUIDE_ORDER)}
    return sorted(GUIDES.glob('*.md'), key=lambda p: (order.get(p.stem, len(order)), p.stem))


def nav(rows, current):
    "One line of links per row of (page, title); the current page in bold."
    def row(label, pages):
        links = ' · '.join(f'<b>{html.escape(t)}</b>' if p == current else f'<a style="color:#0366d6" href="{p}">{html.escape(t)}</a>'
                           for p, t in pages)
        return f'<div style="margin:.15em 0"><span style="color:#777">{label}</span> {links}</div>'
    return (f'<nav style="font-family:sans-serif;font-size:14px;padding:.5em 1em;border-bottom:1px solid #ddd;'
            f'background:#fafafa">{"".join(row(l, p) for l, p in rows)}</nav>')


# --- checks: the docs may only show commands, verbs, names and links that exist --------------------------------

def code_blocks(text):
    "(language, first line number, lines) of each fenced block in markdown `text`."
    out, lang, start, buf = [], None, 0, None
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith('```'):
            if buf is None: lang, start, buf = line.strip()[3:].strip(), i + 1, []
            else: out.append((lang, start, buf)); buf = None
        elif buf is not None: buf.append(line)
    return out


def _click_options(cmd):
    import click
    return {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)} | {'-h', '--help'}


def check_command(line):
    "Why the `mlops-nb ...` command on `line` would not run as written, or None."
    import click
    from mlops_nb.cli import cli
    m = re.search(r'(?:^|[\s/])mlops-nb(\s.*)?$', line)
    if not m: return None
    rest = re.split(r'\s(?:#|&&|\|\||\||;)\s?', ' ' + (m.group(1) or ''))[0]
    try: words = shlex.split(rest)
    except ValueError as e: return f"cannot split `{rest.strip()}`: {e}"
    cmd, path = cli, ['mlops-nb']
    while isinstance(cmd, click.Group) and words and not words[0].startswith('-'):
        if words[0] not in cmd.commands:
            return f"`{' '.join(path)} {words[0]}`: no such command (there are: {', '.join(sorted(cmd.commands))})"
        path.append(words[0]); cmd = cmd.commands[words.pop(0)]
    known = _click_options(cmd)
    for w in words:
        if w.startswith('-') and not re.fullmatch(r'-?\d[\d.e+-]*', w) and w.split('=', 1)[0] not in known:
            return f"`{' '.join(path)}` has no option `{w}` (it has: {', '.join(sorted(known))})"
    return None


def check_magic(line):
    "Why the `%mlops ...` line would be refused, or None (the verbs and options of `mlops_nb.verbs.GRAMMAR`, what the magics parse with)."
    import click
    m = re.match(r'\s*%%?mlops\s+(\S+)(.*)$', line)
    if not m: return None
    from mlops_nb.verbs import GRAMMAR, DEFAULT_SUBVERB
    words = m.group(2).split('#')[0].split()
    cmd, path = GRAMMAR, []
    name = m.group(1)
    while isinstance(cmd, click.Group):
        if name is None or name.startswith('-'):
            if not path: break
            sub = DEFAULT_SUBVERB[path[-1]]
            if name is not None: words.insert(0, name)
        else: sub = name
        if sub not in cmd.commands:
            return f"`{' '.join(['%mlops', *path, sub])}`: no such verb (there are: {', '.join(sorted(cmd.commands))})"
        path.append(sub); cmd = cmd.commands[sub]
        name = words.pop(0) if words and isinstance(cmd, click.Group) else None
    known = _click_options(cmd)
    for w in words:
        if w.startswith('--') and w.split('=', 1)[0] not in known:
            return f"`{' '.join(['%mlops', *path])}` has no option `{w}` (it has: {', '.join(sorted(known))})"
    return None


def check_names(line):
    "Why an `mn.<name>` on `line` does not exist, or None."
    import mlops_nb
    for name in re.findall(r'(?<![\w.])mn\.([A-Za-z_]\w*)', line):
        if not hasattr(mlops_nb, name): return f"`mn.{name}` does not exist in mlops_nb"
    return None


def check_text(text, where):
    "Problems of the commands, verbs and names in markdown `text`'s code blocks, as `where:line: why` strings."
    problems = []
    for lang, start, lines in code_blocks(text):
        for i, line in enumerate(lines):
            checks = (check_command,) if lang in ('sh', 'bash', 'shell', 'console') else \
                     (check_magic, check_names) if lang in ('python', 'py', 'ipython') else ()
            for check in checks:
                why = check(line)
                if why: problems.append(f"{where}:{start + i}: {why}\n    {line.strip()}")
    return problems


def check_links(page_html, where, targets):
    "Relative links and images of `page_html` that lead to no page or file in `targets`."
    problems = []
    for attr, url in re.findall(r'\b(href|src)="([^"#?]+)[^"]*"', page_html):
        if re.match(r'[a-z][a-z0-9+.-]*:', url) or url.startswith(('/', '//')): continue
        if url not in targets:
            near = difflib.get_close_matches(url, sorted(targets), n=2, cutoff=0.5)
            problems.append(f"{where}: a link to `{url}` leads nowhere" + (f" (did you mean {' or '.join(f'`{n}`' for n in near)}?)" if near else ''))
    return problems


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


def site_url(md: Path, url: str) -> str:
    "The site's page for a guide's repository-relative link (`tracking.md`, `../../nbs/20_tracking/24_runs.ipynb`, `../screenshots/x.png`)."
    if re.match(r'[a-z][a-z0-9+.-]*:', url) or url.startswith(('/', '#')): return url
    path, frag = (url.split('#', 1) + [''])[:2]
    target = (md.parent/path).resolve()
    if target.suffix == '.md' and target.parent == GUIDES.resolve(): page = guide_page(target)
    elif target.suffix == '.ipynb' and NBS.resolve() in target.parents: page = page_name(target)
    elif target.parent == SCREENSHOTS.resolve(): page = f'screenshots/{target.name}'
    elif target == (ROOT/'README.md').resolve(): page = 'getting_started.html'
    else: return url
    return page + (f'#{frag}' if frag else '')


def check_repo_links(md: Path):
    "Links of a guide that lead nowhere in the repository (what GitHub shows)."
    text = md.read_text(encoding='utf-8')
    problems = []
    for url in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z][a-z0-9+.-]*:', url) or url.startswith(('/', '#')): continue
        if not (md.parent/url.split('#')[0]).exists():
            problems.append(f"{md.relative_to(ROOT)}: the link `{url}` leads nowhere in the repository "
                            "(guides link to files as GitHub shows them: `tracking.md`, `../../nbs/20_tracking/24_runs.ipynb`, `../screenshots/x.png`)")
    return problems


def render_guide(md: Path):
    "A guide's title and its HTML body, its repository links turned into the site's pages."
    import mistune
    text = md.read_text(encoding='utf-8')
    title = next((l[2:].strip() for l in text.splitlines() if l.startswith('# ')), md.stem)
    body = re.sub(r'\b(href|src)="([^"]+)"', lambda m: f'{m[1]}="{site_url(md, html.unescape(m[2]))}"', mistune.html(text))
    return title, body


def page_shell(title, navigation, body):
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)} - mlops_nb</title>'
            '<style>body{margin:0}main{font-family:sans-serif;max-width:60em;padding:1em 2em;line-height:1.5}'
            'pre{background:#f6f8fa;padding:.8em;overflow-x:auto;line-height:1.3}code{font-size:90%}'
            'table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em}'
            'img{max-width:100%;border:1px solid #ddd}</style></head>'
            f'<body>{navigation}<main>{body}</main></body></html>')


def build(out: Path, execute=True, timeout=600):
    "Build the site into `out`; `execute`: run every notebook (True), none (False), or those named in a collection."
    import nbformat
    from nbconvert import HTMLExporter
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nbs = notebooks()
    if execute not in (True, False):
        unknown = sorted(set(execute) - {p.name for p in nbs})
        if unknown: sys.exit(f"docs: --execute {' '.join(unknown)}: no such notebook in nbs/ (there are: {', '.join(p.name for p in nbs)})")
    titles = {}
    for p in nbs:
        first = nbformat.read(p, as_version=4).cells[0].source.splitlines()[0]
        titles[p] = first.lstrip('# ').strip() or p.stem
    guides = {md: render_guide(md) for md in guide_files()}
    tutorial = [p for p in nbs if p.stem == 'tutorial']
    api = [p for p in nbs if p not in tutorial]
    top = [(guide_page(md), t) for md, (t, _) in guides.items() if md.stem == 'getting_started']
    top += [(page_name(p), 'Tutorial') for p in tutorial]
    top += [(guide_page(md), t) for md, (t, _) in guides.items() if md.stem != 'getting_started']
    top += [('index.html', 'API'), ('cli_reference.html', 'CLI reference')]
    api_row = [(page_name(p), titles[p]) for p in sorted(api, key=lambda p: p.name != 'index.ipynb') if p.stem != 'index']
    rows = lambda page: [('Guides', top)] + ([('API', api_row)] if page in dict(api_row) or page == 'index.html' else [])

    # Check everything the docs show against the code before running anything.
    screenshots = sorted(SCREENSHOTS.glob('*.png'))
    targets = {p for p, _ in top} | {p for p, _ in api_row} | {page_name(p) for p in nbs} | {f'screenshots/{f.name}' for f in screenshots}
    problems = []
    for md, (title, body) in guides.items():
        problems += check_text(md.read_text(encoding='utf-8'), md.relative_to(ROOT))
        problems += check_repo_links(md)
        problems += check_links(body, md.relative_to(ROOT), targets)
    for p in nbs:
        for i, c in enumerate(nbformat.read(p, as_version=4).cells):
            if c.cell_type == 'markdown':
                problems += check_text(c.source, f"{p.relative_to(ROOT)} cell {i}")
                import mistune
                problems += check_links(mistune.html(c.source), f"{p.relative_to(ROOT)} cell {i}", targets)
            elif '#| hide' not in c.source and '#| export' not in c.source:
                problems += [f"{p.relative_to(ROOT)} cell {i}: {why}\n    {l.strip()}" for l in c.source.splitlines()
                             for why in [check_magic(l)] if why]
    if problems:
        sys.exit("docs: what the docs show does not match the code:\n" + '\n'.join(problems))

    out.mkdir(parents=True, exist_ok=True)
    (out/'screenshots').mkdir(exist_ok=True)
    for f in screenshots: shutil.copy2(f, out/'screenshots'/f.name)
    for md, (title, body) in guides.items():
        (out/guide_page(md)).write_text(page_shell(title, nav(rows(guide_page(md)), guide_page(md)), body), encoding='utf-8')
        print(f"docs: {md.relative_to(ROOT)} -> {guide_page(md)}")
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    env = {**os.environ, 'IN_TEST': '1'}  # nbdev_export() cells do nothing while docs build
    for p in nbs:
        t0 = time.perf_counter()
        nb = nbformat.read(p, as_version=4)
        if execute is True or (execute is not False and p.name in execute):
            old = dict(os.environ); os.environ.update(env)
            try: NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(p.parent)}}).execute()
            except CellExecutionError as e:
                sys.exit(f"docs: {p.relative_to(ROOT)} failed while executing:\n{e}")
            finally: os.environ.clear(); os.environ.update(old)
        body, _ = exporter.from_notebook_node(for_docs(nb), resources={'metadata': {'name': titles[p]}})
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav(rows(page_name(p)), page_name(p)), body, count=1)
        (out/page_name(p)).write_text(body, encoding='utf-8')
        print(f"docs: {p.name} -> {page_name(p)} ({time.perf_counter()-t0:.1f} s)")
    (out/'cli_reference.html').write_text(page_shell('CLI reference', nav(rows('cli_reference.html'), 'cli_reference.html'),
                                                     cli_reference()), encoding='utf-8')
    pages = sorted(out.glob('*.html'))
    print(f"docs: {len(pages)} pages in {out}")
    return pages


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT/'docs'/'_site', help="Output folder [docs/_site]")
    ap.add_argument('--no-execute', action='store_true', help="Render the notebooks as saved, without running them")
    ap.add_argument('--execute', action='append', metavar='NOTEBOOK', help="Run only this notebook of nbs/ (repeatable); render the others as saved")
    a = ap.parse_args()
    if a.no_execute and a.execute: ap.error("--no-execute and --execute: choose one")
    build(a.out, execute=False if a.no_execute else set(a.execute) if a.execute else True)
