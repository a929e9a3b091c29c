"""The notebooks are the source and the first tests: run each with `nbdev-test`, slow and integration cells included."""
import subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (REPO/'nbs').glob('*.ipynb'))
# The tutorial runs in a real kernel in the docs build test (tests/test_ci_guards.py), which checks its outputs;
# every other notebook runs here, once (the docs build renders them as saved).
TESTED_BY_THE_DOCS_BUILD = {'tutorial.ipynb'}


def test_every_module_has_a_notebook():
    import json, re
    exported = set()
    for nb in NOTEBOOKS:
        for cell in json.loads((REPO/'nbs'/nb).read_text())['cells']:
            m = re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(cell['source']))
            if m: exported.add(m.group(1))
    modules = {p.stem for p in (REPO/'mlops_nb').glob('*.py') if not p.name.startswith('_')}
    assert modules == exported


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('notebook', sorted(set(NOTEBOOKS) - TESTED_BY_THE_DOCS_BUILD))
def test_notebook(notebook):
    nbdev_test = Path(sys.executable).parent/'nbdev-test'
    r = subprocess.run([str(nbdev_test), '--flags', 'slow integration', '--n-workers', '0', f'nbs/{notebook}'],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nbdev-test failed on nbs/{notebook}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
