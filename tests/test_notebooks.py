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


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize('notebook', NOTEBOOKS)
def test_notebook(notebook):
    nbdev_test = Path(sys.executable).parent/'nbdev-test'
    r = subprocess.run([str(nbdev_test), '--flags', 'slow integration', '--n-workers', '0', f'nbs/{notebook}'],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nbdev-test failed on nbs/{notebook}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
