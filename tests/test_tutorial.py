"""The tutorial as a user runs it: top to bottom in a real kernel (what JupyterLab does), then the checks of what it
promised, in the same kernel. The checks live here, not in a hidden cell of the notebook: a user who opens the
tutorial sees only the tutorial."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHECKS = r'''
import shutil
assert record['rows'] == len(X_train), record
assert auc > 0.95, auc
assert run.params['C'] == '1.0', run.params
assert run.metrics['auc'] == auc, run.metrics
assert registered['alias'] == 'candidate', registered
from mlops_nb.models.registry import model_version
assert model_version('tutorial-model', 'champion')['version'] == registered['version']
assert list(candidate.predict(X_test.head(5))) == list(model.predict(X_test.head(5)))
assert report.drifted == ['mean radius'], report.drifted
assert report.to_frame().index[0] == 'mean radius'
assert usage, 'the "What it cost" cell shows no usage metrics'
assert usage['system/run_cpu_seconds'] > 0 and usage['system/run_peak_memory_megabytes'] > 0, usage
assert Path.cwd() == home
shutil.rmtree(project, ignore_errors=True)
'''


@pytest.mark.slow
@pytest.mark.integration
def test_the_tutorial_runs_top_to_bottom_in_a_kernel_and_does_what_it_says(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(REPO/'nbs'/'tutorial.ipynb', as_version=4)
    hidden = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == 'code' and c.source.startswith('#| hide')]
    assert hidden == [], f"the tutorial shows a user cells that are meant for tests: {hidden}"
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS))
    client = NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert errors == []
    shown = ''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
                    for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))
    assert "['mean radius']" in shown and "('1.0', " in shown
    assert not list(tmp_path.iterdir()), "the tutorial left files in the folder it was started in"
