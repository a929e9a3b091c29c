"""The notebooks are the source and the first tests: run each with `nbdev-test`, slow and integration cells included."""
import subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(str(p.relative_to(REPO/'nbs')) for p in (REPO/'nbs').rglob('*.ipynb')
                   if '.ipynb_checkpoints' not in p.parts and p.name != 'tutorial.ipynb')  # the tutorial: tests/test_tutorial.py


def test_every_module_has_a_notebook():
    import json, re
    exported = set()
    for nb in NOTEBOOKS:
        for cell in json.loads((REPO/'nbs'/nb).read_text())['cells']:
            m = re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(cell['source']))
            if m: exported.add(m.group(1))
    lib = REPO/'mlops_nb'
    modules = {'.'.join(p.relative_to(lib).with_suffix('').parts) for p in lib.rglob('*.py') if not p.name.startswith('_')}
    assert modules == exported


# One `nbdev-test` process per layer (its folder's notebooks in order, as `nbdev-test` runs a project's tests), not one
# per notebook: each process pays for Python, nbdev and, for most notebooks, MLflow's import (2 s), and on a 2-core CI
# machine the suite is bound by the CPU. Notebooks leave no global state behind, so they can share a process;
# `nbdev-test` runs each in a fresh shell and names every notebook that failed.
LAYERS = sorted({Path(nb).parts[0] for nb in NOTEBOOKS if len(Path(nb).parts) > 1})
TOP = [nb for nb in NOTEBOOKS if len(Path(nb).parts) == 1]  # index.ipynb


def nbdev_test(path):
    nbdev_test = Path(sys.executable).parent/'nbdev-test'
    return subprocess.run([str(nbdev_test), '--flags', 'slow integration', '--n-workers', '0', path],
                          cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('layer', LAYERS + TOP)
def test_notebooks(layer):
    r = nbdev_test(f'nbs/{layer}')
    assert r.returncode == 0, f"nbdev-test failed on nbs/{layer}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
